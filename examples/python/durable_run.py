#!/usr/bin/env python3
"""A durable run driven from Python (docs/runs.md): started in the background with a tool the
caller runs itself, left, found again later (on any replica) waiting for that tool's result,
answered, and watched to its end.

Against the server started with examples/tools/config.yaml:

    PYTHONPATH=clients/python /usr/bin/python3 examples/python/durable_run.py 127.0.0.1:50051

Exits non-zero on any failure.
"""
import sys
import time
import uuid

import grpc
from google.protobuf import struct_pb2

from qingyu.agent.v1 import agent_pb2, run_pb2, run_pb2_grpc, tool_pb2

USER = "py-user"


def location_tool():
    schema = struct_pb2.Struct()
    schema.update({"type": "object", "properties": {"precise": {"type": "boolean"}}})
    return tool_pb2.ToolSpec(name="user_location", description="Where the user is now", input_schema=schema)


def start(target, key):
    """Starts the run in the background and returns its id; a retry with the same key finds the same run."""
    with grpc.insecure_channel(target) as channel:
        runs = run_pb2_grpc.RunServiceStub(channel)
        request = run_pb2.StartRunRequest(
            execute=agent_pb2.ExecuteRequest(agent_id="clerk", user_id=USER, task='!call user_location {"precise": true}\nWhat is the weather where I am?'),
            options=run_pb2.RunOptions(background=True, idempotency_key=key, caller_tools=[location_tool()]),
        )
        first = [r.event for r in runs.StartRun(request, timeout=10)]
        again = [r.event for r in runs.StartRun(request, timeout=10)]
        assert first[0].WhichOneof("event") == "accepted", first
        assert again[0].run_id == first[0].run_id, "a retried start must find the same run"
        print("started", first[0].run_id, "(a retry found the same run)")
        return first[0].run_id


def come_back(target, run_id):
    """Later, on a new connection: find what waits on us, answer it, watch the run to its end."""
    with grpc.insecure_channel(target) as channel:
        runs = run_pb2_grpc.RunServiceStub(channel)
        waiting = None
        for _ in range(100):
            listed = runs.ListRuns(run_pb2.ListRunsRequest(user_id=USER, statuses=[run_pb2.RUN_STATUS_WAITING]), timeout=10)
            waiting = next((r for r in listed.runs if r.run_id == run_id), None)
            if waiting:
                break
            time.sleep(0.1)
        assert waiting, "the run should be waiting for our tool"
        call = waiting.pending[0].call
        print("waiting for", waiting.pending[0].reason, call.name, call.arguments)
        answer = runs.SubmitToolResults(
            run_pb2.SubmitToolResultsRequest(
                run_id=run_id, user_id=USER, results=[run_pb2.ToolResultSubmission(tool_call_id=call.tool_call_id, output=tool_pb2.ToolOutput(output="Paris"))]
            ),
            timeout=10,
        )
        print("answered", list(answer.accepted))
        for response in runs.WatchRun(run_pb2.WatchRunRequest(run_id=run_id, user_id=USER), timeout=30):
            event = response.event
            kind = event.WhichOneof("event")
            if kind == "tool_result":
                print(f"  #{event.seq} tool_result {event.tool_result.name}: {event.tool_result.output}")
            elif kind == "completed":
                print(f"  #{event.seq} completed:", event.completed.output.replace("\n", " | "))
        final = runs.GetRun(run_pb2.GetRunRequest(run_id=run_id, user_id=USER), timeout=10).run
        print("status", run_pb2.RunStatus.Name(final.status))


def main(target):
    run_id = start(target, key=f"example-{uuid.uuid4()}")
    come_back(target, run_id)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
