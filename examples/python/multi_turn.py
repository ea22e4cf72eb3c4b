#!/usr/bin/env python3
"""A multi-turn session against Qingyu Agent Runtime, from Python.

Needs grpcio and protobuf (Debian: python3-grpcio python3-protobuf) and the
generated stubs committed in clients/python (package qingyu.agent.v1):

    PYTHONPATH=clients/python /usr/bin/python3 examples/python/multi_turn.py 127.0.0.1:50051

It creates a session, runs two turns in it, reads the history back, saves and
fetches a checkpoint, and streams a third answer. Exits non-zero on any failure.
"""
import sys

import grpc
from google.protobuf import struct_pb2

from qingyu.agent.v1 import agent_pb2, agent_pb2_grpc, session_pb2, session_pb2_grpc


def main(target):
    with grpc.insecure_channel(target) as channel:
        sessions = session_pb2_grpc.SessionServiceStub(channel)
        agents = agent_pb2_grpc.AgentServiceStub(channel)

        session = sessions.CreateSession(session_pb2.CreateSessionRequest(user_id="py-user", agent_id="echo"), timeout=10).session
        print("session", session.session_id)

        for task in ("first turn from python", "second turn from python"):
            reply = agents.Execute(agent_pb2.ExecuteRequest(session_id=session.session_id, user_id="py-user", task=task), timeout=10)
            print("answer:", reply.result.output)

        history = sessions.GetSession(session_pb2.GetSessionRequest(session_id=session.session_id, user_id="py-user"), timeout=10).session
        print("messages:", [(m.role, m.content) for m in history.messages])
        assert len(history.messages) == 4, history.messages

        data = struct_pb2.Struct()
        data.update({"step": 2, "language": "python"})
        saved = sessions.SaveCheckpoint(session_pb2.SaveCheckpointRequest(session_id=session.session_id, data=data, expected_version=history.version), timeout=10).checkpoint
        fetched = sessions.GetCheckpoint(session_pb2.GetCheckpointRequest(session_id=session.session_id), timeout=10).checkpoint
        print("checkpoint:", fetched.checkpoint_id, dict(fetched.data))
        assert fetched.checkpoint_id == saved.checkpoint_id

        try:
            sessions.SaveCheckpoint(session_pb2.SaveCheckpointRequest(session_id=session.session_id, data=data, expected_version=history.version), timeout=10)
            raise AssertionError("a stale expected_version was accepted")
        except grpc.RpcError as err:
            # The reason, for branching on without parsing the message: a trailer any grpcio reads.
            reason = dict(err.trailing_metadata() or ()).get("qingyu-reason")
            print("stale version:", err.code().name, reason)
            assert err.code() == grpc.StatusCode.ABORTED and reason == "STALE_VERSION"

        kinds, text = [], ""
        for event in agents.ExecuteStream(agent_pb2.ExecuteStreamRequest(session_id=session.session_id, task="stream the third turn"), timeout=10):
            kind = event.WhichOneof("event")
            kinds.append(kind)
            if kind == "delta":
                text += event.delta.text
        print("stream:", kinds[0], f"{kinds.count('delta')} deltas", kinds[-1], repr(text))
        assert kinds[0] == "started" and kinds[-1] == "completed" and "[history=4]" in text


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
