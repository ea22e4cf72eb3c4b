import { Code, type Middleware, type Principal, type RpcCall } from "@qingyu/plugin-api";
import { expect } from "vitest";
import { agentContext, collect, terminal, type ContextInit } from "../../../support/plugin-context.ts";
import { rejection } from "../../../support/rejection.ts";

/** Runs one call through the middleware; returns the context it ended with and whether the agent ran. */
export async function run(mw: Middleware, init: ContextInit): Promise<{ ctx: ReturnType<typeof agentContext>; ran: boolean }> {
  const ctx = agentContext(init);
  const t = terminal();
  const events = await collect(mw.process(ctx, t.next));
  expect(events.at(-1)?.type).toBe("completed");
  return { ctx, ran: t.calls === 1 };
}

/** The ConnectError a call is refused with; asserts the agent never ran. */
export async function refusal(mw: Middleware, init: ContextInit): Promise<{ code: Code; message: string }> {
  const t = terminal();
  // process may refuse synchronously (as validation does) or in the stream: both reach the caller alike.
  const err = await rejection(Promise.resolve().then(() => collect(mw.process(agentContext(init), t.next))));
  expect(t.calls).toBe(0);
  return { code: err.code, message: err.rawMessage };
}

/** `headers` carrying a bearer credential. */
export function bearer(credential: string): Record<string, string> {
  return { authorization: `Bearer ${credential}` };
}

/** An RpcCall as the server hands it to `admit`. */
export function rpcCall(headers: Record<string, string>): RpcCall & { principal: Principal | undefined } {
  return {
    service: "qingyu.agent.v1.SessionService",
    method: "GetSession",
    header: (name) => headers[name],
    principal: undefined,
    signal: new AbortController().signal,
  };
}
