#!/usr/bin/env python3
"""A multi-turn session against Qingyu Agent Runtime, from Python.

Needs grpcio and protobuf (Debian: python3-grpcio python3-protobuf) and message
classes generated from proto/ with protoc:

    protoc -I ../../proto --python_out=gen ../../proto/qingyu/agent/v1/*.proto
    PYTHONPATH=gen python3 multi_turn.py 127.0.0.1:50051

It creates a session, runs two turns in it, reads the history back, saves and
fetches a checkpoint, and streams a third answer. Exits non-zero on any failure.
"""
import sys

import grpc
from google.protobuf import struct_pb2

from qingyu.agent.v1 import agent_pb2, session_pb2


def method(channel, service, name, request_cls, response_cls, stream=False):
    path = f"/qingyu.agent.v1.{service}/{name}"
    make = channel.unary_stream if stream else channel.unary_unary
    return make(path, request_serializer=request_cls.SerializeToString, response_deserializer=response_cls.FromString)


def main(target):
    with grpc.insecure_channel(target) as channel:
        create_session = method(channel, "SessionService", "CreateSession", session_pb2.CreateSessionRequest, session_pb2.CreateSessionResponse)
        get_session = method(channel, "SessionService", "GetSession", session_pb2.GetSessionRequest, session_pb2.GetSessionResponse)
        save_checkpoint = method(channel, "SessionService", "SaveCheckpoint", session_pb2.SaveCheckpointRequest, session_pb2.SaveCheckpointResponse)
        get_checkpoint = method(channel, "SessionService", "GetCheckpoint", session_pb2.GetCheckpointRequest, session_pb2.GetCheckpointResponse)
        execute = method(channel, "AgentService", "Execute", agent_pb2.ExecuteRequest, agent_pb2.ExecuteResponse)
        execute_stream = method(channel, "AgentService", "ExecuteStream", agent_pb2.ExecuteStreamRequest, agent_pb2.ExecuteStreamResponse, stream=True)

        session = create_session(session_pb2.CreateSessionRequest(user_id="py-user", agent_id="echo"), timeout=10).session
        print("session", session.session_id)

        for task in ("first turn from python", "second turn from python"):
            reply = execute(agent_pb2.ExecuteRequest(session_id=session.session_id, user_id="py-user", task=task), timeout=10)
            print("answer:", reply.result.output)

        history = get_session(session_pb2.GetSessionRequest(session_id=session.session_id, user_id="py-user"), timeout=10).session
        print("messages:", [(m.role, m.content) for m in history.messages])
        assert len(history.messages) == 4, history.messages

        data = struct_pb2.Struct()
        data.update({"step": 2, "language": "python"})
        saved = save_checkpoint(session_pb2.SaveCheckpointRequest(session_id=session.session_id, data=data, expected_version=history.version), timeout=10).checkpoint
        fetched = get_checkpoint(session_pb2.GetCheckpointRequest(session_id=session.session_id), timeout=10).checkpoint
        print("checkpoint:", fetched.checkpoint_id, dict(fetched.data))
        assert fetched.checkpoint_id == saved.checkpoint_id

        try:
            save_checkpoint(session_pb2.SaveCheckpointRequest(session_id=session.session_id, data=data, expected_version=history.version), timeout=10)
            raise AssertionError("a stale expected_version was accepted")
        except grpc.RpcError as err:
            # The reason, for branching on without parsing the message: a trailer any grpcio reads.
            reason = dict(err.trailing_metadata() or ()).get("qingyu-reason")
            print("stale version:", err.code().name, reason)
            assert err.code() == grpc.StatusCode.ABORTED and reason == "STALE_VERSION"

        kinds, text = [], ""
        for event in execute_stream(agent_pb2.ExecuteStreamRequest(session_id=session.session_id, task="stream the third turn"), timeout=10):
            kind = event.WhichOneof("event")
            kinds.append(kind)
            if kind == "delta":
                text += event.delta.text
        print("stream:", kinds[0], f"{kinds.count('delta')} deltas", kinds[-1], repr(text))
        assert kinds[0] == "started" and kinds[-1] == "completed" and "[history=4]" in text


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
