#!/usr/bin/env python3
"""A backend's own tools for Qingyu's agents: a ToolService in Python (docs/tools.md).

The runtime is the client: config `tools.backends.billing: {address: "127.0.0.1:7000"}`
makes these tools billing__balance and billing__refund for the agents that list them.

    PYTHONPATH=clients/python /usr/bin/python3 examples/python/tool_service.py 7000

Port 0 picks a free one; the port is printed on the first line of stdout.
"""
import json
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import struct_pb2

from qingyu.agent.v1 import tool_pb2, tool_pb2_grpc

BALANCES = {"acct-1": 120.0, "acct-2": 7.5}


def schema(properties, required):
    s = struct_pb2.Struct()
    s.update({"type": "object", "properties": properties, "required": required, "additionalProperties": False})
    return s


TOOLS = [
    tool_pb2.ToolSpec(
        name="balance",
        description="The balance of an account",
        input_schema=schema({"account": {"type": "string"}}, ["account"]),
        idempotent=True,
    ),
    tool_pb2.ToolSpec(
        name="refund",
        description="Refunds an amount to an account; slow, reports progress",
        input_schema=schema({"account": {"type": "string"}, "amount": {"type": "number"}, "seconds": {"type": "number"}}, ["account", "amount"]),
        # Marked idempotent because it dedupes on the idempotency key below.
        idempotent=True,
        sequential=True,
    ),
]


class Billing(tool_pb2_grpc.ToolServiceServicer):
    def __init__(self):
        self.done = {}  # idempotency key -> output: a retried call has no second effect
        self.lock = threading.Lock()

    def ListTools(self, request, context):
        return tool_pb2.ListToolsResponse(tools=TOOLS)

    def CallTool(self, request, context):
        args = json.loads(request.arguments)
        if request.name == "balance":
            if args["account"] not in BALANCES:
                yield tool_pb2.CallToolResponse(output=tool_pb2.ToolOutput(output=f"no account {args['account']}", is_error=True))
                return
            yield tool_pb2.CallToolResponse(output=tool_pb2.ToolOutput(output=json.dumps({"account": args["account"], "balance": BALANCES[args["account"]]})))
        elif request.name == "refund":
            with self.lock:
                if request.idempotency_key in self.done:
                    yield tool_pb2.CallToolResponse(output=tool_pb2.ToolOutput(output=self.done[request.idempotency_key]))
                    return
            # The runtime cancels this RPC when the run is cancelled: stop working when it does.
            cancelled = threading.Event()
            context.add_callback(cancelled.set)
            seconds = float(args.get("seconds", 0))
            steps = max(1, int(seconds * 10))
            for step in range(steps):
                if cancelled.wait(seconds / steps):
                    print(json.dumps({"cancelled": request.tool_call_id}), flush=True)
                    return
                yield tool_pb2.CallToolResponse(progress=tool_pb2.ToolProgress(message="refunding", progress=step + 1, total=steps))
            with self.lock:
                BALANCES[args["account"]] = BALANCES.get(args["account"], 0) + args["amount"]
                output = json.dumps({"account": args["account"], "refunded": args["amount"], "balance": BALANCES[args["account"]]})
                self.done[request.idempotency_key] = output
            yield tool_pb2.CallToolResponse(output=tool_pb2.ToolOutput(output=output))
        else:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no tool {request.name}")


def main(port):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    tool_pb2_grpc.add_ToolServiceServicer_to_server(Billing(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(bound, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7000)
