#!/usr/bin/env python3
"""An agent that acts, driven from Python (docs/tools.md): every step and tool call as a
typed event, a cancel that reaches the running tool, and the next turn of the conversation.

Against the server started with examples/tools/config.yaml (and tool_service.py running):

    PYTHONPATH=clients/python /usr/bin/python3 examples/python/tool_agent.py 127.0.0.1:50051

The agent runs on the echo provider, which plays the `!call` lines of the task (a model
would choose the calls itself). Exits non-zero on any failure.
"""
import sys

import grpc

from qingyu.agent.v1 import agent_pb2, agent_pb2_grpc, session_pb2, session_pb2_grpc, tool_pb2

USER = "py-user"


def stream(agents, session_id, task):
    """Runs one turn and prints each event as it comes; returns the result."""
    request = agent_pb2.ExecuteStreamRequest(agent_id="clerk", session_id=session_id, user_id=USER, task=task)
    result = None
    for event in agents.ExecuteStream(request, timeout=60):
        kind = event.WhichOneof("event")
        if kind == "step_started":
            print(f"step {event.step_started.step}")
        elif kind == "tool_call":
            print(f"  call {event.tool_call.call.name} {event.tool_call.call.arguments}")
        elif kind == "tool_result":
            r = event.tool_result
            print(f"  result {r.name} {tool_pb2.ToolOutcome.Name(r.outcome)} {r.output}")
        elif kind == "completed":
            result = event.completed
    return result


def main(target):
    with grpc.insecure_channel(target) as channel:
        agents = agent_pb2_grpc.AgentServiceStub(channel)
        sessions = session_pb2_grpc.SessionServiceStub(channel)
        session = sessions.CreateSession(session_pb2.CreateSessionRequest(user_id=USER, agent_id="clerk"), timeout=10).session

        # One step calls a tool from each source, in parallel; the second step answers.
        task = "\n".join(
            [
                '!call weather {"city": "Paris"}',
                '!call notes__add_note {"text": "call the bank"}',
                '!call billing__balance {"account": "acct-1"}',
                "How are things?",
            ]
        )
        result = stream(agents, session.session_id, task)
        print("answer:", result.output.replace("\n", " | "))
        print("steps:", result.steps, "tool calls:", len(result.tool_calls), "finish:", result.finish_reason)

        # Cancel mid-tool: the refund takes 30 s; cancel as soon as it starts. The backend sees
        # its CallTool cancelled, and the turn is not stored.
        call = agents.ExecuteStream(
            agent_pb2.ExecuteStreamRequest(
                agent_id="clerk", session_id=session.session_id, user_id=USER, task='!call billing__refund {"account": "acct-2", "amount": 5, "seconds": 30}'
            ),
            timeout=60,
        )
        try:
            for event in call:
                if event.WhichOneof("event") == "tool_call":
                    print("cancelling during", event.tool_call.call.name)
                    call.cancel()
        except grpc.RpcError as err:
            print("stream ended:", err.code().name)

        # The conversation goes on: the first turn's tool calls are in the history.
        result = stream(agents, session.session_id, "!call notes__list_notes {}\nWhat did I note?")
        print("answer:", result.output.replace("\n", " | "))
        history = sessions.GetSession(session_pb2.GetSessionRequest(session_id=session.session_id, user_id=USER), timeout=10).session
        print("history:", " ".join(m.role + (f"({len(m.tool_calls)} calls)" if m.tool_calls else "") for m in history.messages))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
