#!/usr/bin/env python3
"""A durable run on one bidirectional stream (RunService.Run, docs/runs.md): the first message starts the
run with a tool the caller runs itself; when the run waits for that tool, the answer goes back on the
same stream; the stream ends after the run's last event. A second stream then attaches to the finished
run and replays it from a sequence number.

Against the server started with examples/tools/config.yaml:

    PYTHONPATH=clients/python /usr/bin/python3 examples/python/run_stream.py 127.0.0.1:50051

Exits non-zero on any failure.
"""
import queue
import sys

import grpc
from google.protobuf import struct_pb2

from qingyu.agent.v1 import agent_pb2, run_pb2, run_pb2_grpc, tool_pb2

USER = "py-user"
DONE = object()


def location_tool():
    schema = struct_pb2.Struct()
    schema.update({"type": "object", "properties": {"precise": {"type": "boolean"}}})
    return tool_pb2.ToolSpec(name="user_location", description="Where the user is now", input_schema=schema)


def requests(outbox):
    """What the stream sends: whatever the loop below puts in the outbox, until it says DONE."""
    while True:
        item = outbox.get()
        if item is DONE:
            return
        yield item


def main(target):
    outbox = queue.Queue()
    outbox.put(
        run_pb2.RunRequest(
            start=run_pb2.StartRunRequest(
                execute=agent_pb2.ExecuteRequest(agent_id="clerk", user_id=USER, task='!call user_location {"precise": true}\nWhat is the weather where I am?'),
                options=run_pb2.RunOptions(caller_tools=[location_tool()]),
            )
        )
    )
    with grpc.insecure_channel(target) as channel:
        runs = run_pb2_grpc.RunServiceStub(channel)
        seqs, kinds, run_id, result, answered = [], [], "", None, None
        for response in runs.Run(requests(outbox), timeout=30):
            kind = response.WhichOneof("message")
            if kind == "tool_results":
                answered = list(response.tool_results.accepted)
                print("answered:", answered)
                continue
            event = response.event
            run_id = event.run_id
            seqs.append(event.seq)
            which = event.WhichOneof("event")
            kinds.append(which)
            print(f"{event.seq:>3} {which}")
            if which == "waiting":
                # The run is parked on our tool: run it here and answer on the same stream.
                for pending in event.waiting.pending:
                    assert pending.reason == "caller" and pending.call.name == "user_location", pending
                    output = tool_pb2.ToolOutput(output="Lisbon")
                    outbox.put(
                        run_pb2.RunRequest(
                            tool_results=run_pb2.SubmitToolResultsRequest(
                                results=[run_pb2.ToolResultSubmission(tool_call_id=pending.call.tool_call_id, output=output)]
                            )
                        )
                    )
            if which == "completed":
                result = event.completed
        outbox.put(DONE)
        assert seqs == list(range(1, len(seqs) + 1)), f"sequence numbers are not dense: {seqs}"
        assert kinds[0] == "accepted" and kinds[-1] == "completed", kinds
        assert answered and len(answered) == 1, answered
        assert result is not None and result.output.endswith("[user_location] Lisbon"), result
        print("output:", result.output)

        # Attach to the finished run from seq 2: its events again, from the third on, each once and in order (a
        # finished run is replayed from its journal, which keeps no text deltas, unless the server has Redis).
        attach = run_pb2.RunRequest(attach=run_pb2.WatchRunRequest(run_id=run_id, after_seq=2, user_id=USER))
        replay = [r.event for r in runs.Run(iter([attach]), timeout=10)]
        replayed = [e.seq for e in replay]
        assert replayed == sorted(set(replayed)) and set(replayed) <= set(seqs[2:]), (replayed, seqs)
        assert replay[-1].WhichOneof("event") == "completed" and replay[-1].seq == seqs[-1], replay[-1]
        deltas = sum(1 for e in replay if e.WhichOneof("event") == "delta")
        print(f"replayed {len(replay)} events after seq 2, {deltas} of them text deltas")

        # A request the server refuses ends the stream with its status; here, a first message that is not start or attach.
        try:
            list(runs.Run(iter([run_pb2.RunRequest(cancel=run_pb2.CancelRunRequest(run_id=run_id))]), timeout=10))
            raise AssertionError("a stream that begins with cancel was accepted")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            print("refused:", err.code().name, err.details())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
