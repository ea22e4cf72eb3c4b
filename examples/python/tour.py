#!/usr/bin/env python3
"""The four things a backend does with Qingyu Agent Runtime, from Python with grpcio.

Uses the generated stubs committed in clients/python (package qingyu.agent.v1):

    PYTHONPATH=clients/python /usr/bin/python3 examples/python/tour.py 127.0.0.1:50051

(or `pip install ./clients/python` in a virtualenv). Needs the `echo` agent, as
config/example.yaml has. Prints one line per step; exits non-zero when the server
answers something other than expected.
"""
import sys

import grpc

from qingyu.agent.v1 import agent_pb2, agent_pb2_grpc, session_pb2, session_pb2_grpc

TIMEOUT = 10  # seconds; every call gets a deadline


def reason_of(err):
    """The machine-readable reason the server puts in the `qingyu-reason` trailer."""
    return dict(err.trailing_metadata() or ()).get("qingyu-reason")


def execute(agents):
    reply = agents.Execute(agent_pb2.ExecuteRequest(agent_id="echo", task="hello from python"), timeout=TIMEOUT)
    print(f"execute: {reply.result.output}")


def stream_then_cancel(agents):
    call = agents.ExecuteStream(agent_pb2.ExecuteStreamRequest(agent_id="echo", task="a long answer we stop early"), timeout=TIMEOUT)
    kinds, first = [], None
    try:
        for event in call:
            kinds.append(event.WhichOneof("event"))
            if kinds[-1] == "delta" and first is None:
                first = event.delta.text
                # Cancelling tells the server, which stops the model: no tokens for a caller who left.
                call.cancel()
        outcome = "OK (the server had finished first)"
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:
            raise
        outcome = err.code().name
    print(f'stream: {kinds[0]}; first delta "{first}"; cancelled -> {outcome}')


def two_turns(agents, sessions):
    session = sessions.CreateSession(session_pb2.CreateSessionRequest(user_id="py-user", agent_id="echo"), timeout=TIMEOUT).session
    print(f"session: created {session.session_id}")
    for turn, task in enumerate(("my name is Ada", "what is my name?"), start=1):
        # No agent_id: the session's agent answers, with the session's history in the prompt.
        reply = agents.Execute(agent_pb2.ExecuteRequest(session_id=session.session_id, user_id="py-user", task=task), timeout=TIMEOUT)
        print(f"session: turn {turn} -> {reply.result.output}")
    history = sessions.GetSession(session_pb2.GetSessionRequest(session_id=session.session_id, user_id="py-user"), timeout=TIMEOUT).session
    roles = ", ".join(m.role for m in history.messages)
    print(f"session: GetSession has {len(history.messages)} messages: {roles}")
    assert len(history.messages) == 4, history.messages


def error_codes(agents, sessions):
    try:
        sessions.GetSession(session_pb2.GetSessionRequest(session_id="00000000-0000-4000-8000-000000000000"), timeout=TIMEOUT)
        raise AssertionError("an unknown session was found")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND, err
        print(f"error: GetSession(unknown id) -> {err.code().name} reason={reason_of(err)}")
    try:
        agents.Execute(agent_pb2.ExecuteRequest(agent_id="echo", task=""), timeout=TIMEOUT)
        raise AssertionError("an empty task was accepted")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        print(f"error: Execute(empty task) -> {err.code().name} reason={reason_of(err)} ({err.details()})")


def main(target):
    with grpc.insecure_channel(target) as channel:
        agents = agent_pb2_grpc.AgentServiceStub(channel)
        sessions = session_pb2_grpc.SessionServiceStub(channel)
        execute(agents)
        stream_then_cancel(agents)
        two_turns(agents, sessions)
        error_codes(agents, sessions)
    print("done")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
