#!/usr/bin/env python3
"""Reads error reasons as a Python grpcio client without the googleapis protos can:
the `qingyu-reason` trailing metadata. Used by test/e2e/error-reasons.e2e.test.ts.

    PYTHONPATH=<protoc --python_out of proto/qingyu> error_reasons.py HOST:PORT ALICE_KEY RATE_LIMITED_KEY

Prints one JSON object: for each case, the status code name, the reason trailer,
and whether grpc-status-details-bin came too.
"""
import json
import sys
import uuid

import grpc
from google.protobuf import struct_pb2

from qingyu.agent.v1 import agent_pb2, session_pb2


def method(channel, service, name, request_cls, response_cls):
    return channel.unary_unary(
        f"/qingyu.agent.v1.{service}/{name}",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )


def refusal(call, request, key):
    metadata = [("authorization", f"Bearer {key}")] if key else []
    try:
        call(request, metadata=metadata, timeout=10)
    except grpc.RpcError as err:
        trailers = dict(err.trailing_metadata() or ())
        return {
            "code": err.code().name,
            "reason": trailers.get("qingyu-reason"),
            "details_bin": "grpc-status-details-bin" in trailers,
        }
    return {"code": "OK"}


def main(target, alice, limited):
    with grpc.insecure_channel(target) as channel:
        create_session = method(channel, "SessionService", "CreateSession", session_pb2.CreateSessionRequest, session_pb2.CreateSessionResponse)
        get_session = method(channel, "SessionService", "GetSession", session_pb2.GetSessionRequest, session_pb2.GetSessionResponse)
        save_checkpoint = method(channel, "SessionService", "SaveCheckpoint", session_pb2.SaveCheckpointRequest, session_pb2.SaveCheckpointResponse)
        execute = method(channel, "AgentService", "Execute", agent_pb2.ExecuteRequest, agent_pb2.ExecuteResponse)
        execute_batch = method(channel, "AgentService", "ExecuteBatch", agent_pb2.ExecuteBatchRequest, agent_pb2.ExecuteBatchResponse)

        session = create_session(session_pb2.CreateSessionRequest(agent_id="echo"), metadata=[("authorization", f"Bearer {alice}")], timeout=10).session
        data = struct_pb2.Struct()
        data.update({"step": 1})
        batch = agent_pb2.ExecuteBatchRequest(
            requests=[agent_pb2.ExecuteRequest(agent_id="echo", task="a"), agent_pb2.ExecuteRequest(agent_id="echo", task="b", session_id="not-a-uuid")]
        )
        cases = {
            "session_not_found": refusal(get_session, session_pb2.GetSessionRequest(session_id=str(uuid.uuid4())), alice),
            "stale_version": refusal(save_checkpoint, session_pb2.SaveCheckpointRequest(session_id=session.session_id, data=data, expected_version=7), alice),
            "invalid_field": refusal(execute_batch, batch, alice),
            "unauthenticated": refusal(get_session, session_pb2.GetSessionRequest(session_id=str(uuid.uuid4())), None),
            "token_invalid": refusal(get_session, session_pb2.GetSessionRequest(session_id=str(uuid.uuid4())), "not-a-key"),
            "rate_limit_first": refusal(execute, agent_pb2.ExecuteRequest(agent_id="echo", task="one"), limited),
            "rate_limited": refusal(execute, agent_pb2.ExecuteRequest(agent_id="echo", task="two"), limited),
        }
        print(json.dumps(cases))


if __name__ == "__main__":
    main(*sys.argv[1:4])
