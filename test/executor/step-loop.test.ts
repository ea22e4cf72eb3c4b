import {
  type AgentDefinition,
  type ChatMessage,
  Code,
  ConnectError,
  type LlmProvider,
  type Middleware,
  type ProviderChunk,
  ProviderError,
  type ProviderRequest,
  type RunEvent,
  type RuntimeEvent,
  type Tool,
  ToolError,
} from "@qingyu/plugin-api";
import { afterEach, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import type { CallInfo, ExecuteInput } from "../../src/executor/context.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { add, agent, testExecutor } from "../support/executor.ts";
import { rejection } from "../support/rejection.ts";

/** What the stand-in model does at step n: text and/or tool calls ([name, argumentsJson]). */
type Turn = { say?: string; calls?: [string, string][]; finish?: string };

/** A model double: answers step n (1-based, counted per call) from `script`, and records every request. */
function scriptedModel(script: (n: number, req: ProviderRequest) => Turn, capabilities: LlmProvider["capabilities"] = { tools: true }) {
  const requests: ProviderRequest[] = [];
  let n = 0;
  const provider: LlmProvider & { requests: ProviderRequest[] } = {
    requests,
    capabilities,
    async *stream(req, signal): AsyncIterable<ProviderChunk> {
      requests.push(structuredClone(req));
      const turn = script(++n, req);
      if (turn.say) for (const word of turn.say.split(/(?<= )/)) yield { type: "delta", text: word };
      const calls = turn.calls ?? [];
      for (const [i, [name, args]] of calls.entries()) {
        signal.throwIfAborted();
        yield { type: "tool_call_delta", index: i, id: `c${n}_${i}`, name, argumentsDelta: args };
      }
      for (const [i, [name, args]] of calls.entries()) yield { type: "tool_call", index: i, call: { id: `c${n}_${i}`, name, arguments: args } };
      yield { type: "finish", finishReason: turn.finish ?? (calls.length ? "tool_calls" : "stop"), usage: { inputTokens: 10, outputTokens: 2 } };
    },
  };
  return provider;
}

const stores: SessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function build(provider: LlmProvider, tools: Tool[], options: { agent?: Partial<AgentDefinition>; middleware?: Middleware[]; abandonAfterMs?: number } = {}) {
  const built = testExecutor({
    agents: [agent(options.agent)],
    providers: { model: provider },
    tools,
    middleware: options.middleware,
    toolLimits: { maxOutputBytes: 1024, abandonAfterMs: options.abandonAfterMs ?? 200 },
  });
  stores.push(built.store);
  return built;
}

function input(overrides: Partial<ExecuteInput> = {}): ExecuteInput {
  return { agentId: "helper", task: "what is 1+2?", sessionId: "", userId: "alice", metadata: {}, options: {}, ...overrides };
}

function callInfo(signal: AbortSignal = new AbortController().signal, deadline?: number): CallInfo {
  return { signal, deadline, header: () => undefined };
}

async function collect(stream: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of stream) out.push(event);
  return out;
}

const result = (events: RunEvent[]) => (events.at(-1) as Extract<RunEvent, { type: "completed" }>).result;

describe("the step loop", () => {
  it("runs a tool the model calls, gives it the result and streams every step in order", async () => {
    const model = scriptedModel((n) => (n === 1 ? { say: "Let me add. ", calls: [["add", '{"a":1,"b":2}']] } : { say: "It is 3." }));
    const { executor } = build(model, [add]);
    const events = await collect(executor.stream(input(), callInfo()));
    expect(events.map((e) => e.type)).toEqual([
      "started",
      "step_started",
      "delta",
      "delta",
      "delta",
      "tool_call_started",
      "tool_call_delta",
      "step_finished",
      "tool_call",
      "tool_result",
      "step_started",
      "delta",
      "delta",
      "delta",
      "step_finished",
      "completed",
    ]);
    const r = result(events);
    expect(r.output).toBe("Let me add. It is 3.");
    expect(r.steps).toBe(2);
    expect(r.usage).toEqual({ inputTokens: 20, outputTokens: 4 });
    expect(r.toolCalls).toEqual([
      expect.objectContaining({ id: "c1_0", name: "add", arguments: '{"a":1,"b":2}', step: 1, outcome: "ok", output: '{"sum":3}' }),
    ]);
    // The second request carries the assistant's call and the tool's answer to it.
    expect(model.requests[1]!.messages.slice(-2)).toEqual([
      { role: "assistant", content: "Let me add. ", toolCalls: [{ id: "c1_0", name: "add", arguments: '{"a":1,"b":2}' }] },
      { role: "tool", toolCallId: "c1_0", content: '{"sum":3}' },
    ]);
    expect(model.requests[0]!.tools).toEqual([{ name: "add", description: "Adds two numbers", parameters: expect.objectContaining({ type: "object" }) }]);
  });

  it("answers arguments that do not match the schema, and unknown tools, as tool errors the model sees; the run goes on", async () => {
    let ran = 0;
    const counted = { ...add, execute: (...a: Parameters<Tool["execute"]>) => (ran++, add.execute(...a)) };
    const model = scriptedModel((n) =>
      n === 1
        ? {
            calls: [
              ["add", '{"a":"one","b":2}'],
              ["add", "{not json"],
              ["subtract", "{}"],
            ],
          }
        : { say: "sorry" },
    );
    const { executor } = build(model, [counted]);
    const r = await executor.execute(input(), callInfo());
    expect(ran).toBe(0);
    expect(r.toolCalls!.map((c) => c.outcome)).toEqual(["invalid_arguments", "invalid_arguments", "denied"]);
    expect(r.toolCalls![0]!.output).toMatch(/input schema: \/a must be number/);
    expect(r.toolCalls![1]!.output).toMatch(/not valid JSON/);
    expect(r.toolCalls![2]!.output).toMatch(/no tool named "subtract".*available: add/);
    expect(model.requests[1]!.messages.filter((m) => m.role === "tool").map((m) => m.toolCallId)).toEqual(["c1_0", "c1_1", "c1_2"]);
    expect(r.output).toBe("sorry");
  });

  it("runs a step's calls in parallel up to maxParallelTools, and a sequential tool's calls one at a time", async () => {
    let running = 0;
    let most = 0;
    const slow = (name: string, sequential = false): Tool => ({
      name,
      description: "",
      inputSchema: { type: "object" },
      sequential,
      async execute() {
        most = Math.max(most, ++running);
        await sleep(30);
        running--;
        return "done";
      },
    });
    const calls: [string, string][] = Array.from({ length: 5 }, () => ["wide", "{}"]);
    const parallel = build(
      scriptedModel((n) => (n === 1 ? { calls } : { say: "ok" })),
      [slow("wide")],
      { agent: { limits: { maxParallelTools: 3 } } },
    );
    const r = await parallel.executor.execute(input(), callInfo());
    expect(r.toolCalls!.map((c) => c.outcome)).toEqual(["ok", "ok", "ok", "ok", "ok"]);
    expect(most).toBe(3);

    most = 0;
    const seq = build(
      scriptedModel((n) =>
        n === 1
          ? {
              calls: [
                ["one", "{}"],
                ["one", "{}"],
                ["one", "{}"],
              ],
            }
          : { say: "ok" },
      ),
      [slow("one", true)],
    );
    await seq.executor.execute(input(), callInfo());
    expect(most).toBe(1);
  });

  it("gives the results back in the model's order even when they finish in another", async () => {
    const wait: Tool = {
      name: "wait",
      description: "",
      inputSchema: { type: "object", properties: { ms: { type: "number" } } },
      execute: async (args) => {
        await sleep((args as { ms: number }).ms);
        return `waited ${(args as { ms: number }).ms}`;
      },
    };
    const model = scriptedModel((n) =>
      n === 1
        ? {
            calls: [
              ["wait", '{"ms":60}'],
              ["wait", '{"ms":1}'],
            ],
          }
        : { say: "ok" },
    );
    const { executor } = build(model, [wait]);
    const events = await collect(executor.stream(input(), callInfo()));
    const results = events.filter((e) => e.type === "tool_result").map((e) => (e as Extract<RunEvent, { type: "tool_result" }>).record.output);
    expect(results).toEqual(["waited 1", "waited 60"]);
    expect(model.requests[1]!.messages.filter((m) => m.role === "tool").map((m) => m.content)).toEqual(["waited 60", "waited 1"]);
  });

  it("ends at maxSteps with a result holding the output so far, the calls made, and the last step's calls skipped", async () => {
    let ran = 0;
    const counted: Tool = { name: "again", description: "", inputSchema: { type: "object" }, execute: () => `run ${++ran}` };
    const model = scriptedModel((n) => ({ say: `step ${n}. `, calls: [["again", "{}"]] }));
    const { executor } = build(model, [counted], { agent: { limits: { maxSteps: 3 } } });
    const r = await executor.execute(input(), callInfo());
    expect(r.success).toBe(true);
    expect(r.finishReason).toBe("max_steps");
    expect(r.steps).toBe(3);
    expect(r.output).toBe("step 1. step 2. step 3. ");
    expect(r.toolCalls!.map((c) => c.outcome)).toEqual(["ok", "ok", "skipped"]);
    expect(ran).toBe(2);
    expect(model.requests).toHaveLength(3);
  });

  it("takes the smaller of the call's and the agent's maxSteps", async () => {
    const model = scriptedModel(() => ({ calls: [["add", '{"a":1,"b":1}']] }));
    const { executor } = build(model, [add], { agent: { limits: { maxSteps: 5 } } });
    expect((await executor.execute(input({ options: { maxSteps: 2 } }), callInfo())).steps).toBe(2);
    expect((await executor.execute(input({ options: { maxSteps: 50 } }), callInfo())).steps).toBe(5);
  });

  it("ends at maxToolCalls: calls beyond the budget are skipped and no further step is taken", async () => {
    const model = scriptedModel(() => ({
      calls: [
        ["add", '{"a":1,"b":1}'],
        ["add", '{"a":2,"b":2}'],
      ],
    }));
    const { executor } = build(model, [add], { agent: { limits: { maxToolCalls: 3 } } });
    const r = await executor.execute(input(), callInfo());
    expect(r.finishReason).toBe("max_tool_calls");
    expect(r.toolCalls!.map((c) => c.outcome)).toEqual(["ok", "ok", "ok", "skipped"]);
    expect(model.requests).toHaveLength(2);
  });

  it("times a tool out: its signal fires and the model is told", async () => {
    let signalled = false;
    const stuck: Tool = {
      name: "stuck",
      description: "",
      inputSchema: { type: "object" },
      timeoutMs: 50,
      execute: (_args, ctx) =>
        new Promise((_, reject) =>
          ctx.signal.addEventListener("abort", () => {
            signalled = true;
            reject(ctx.signal.reason);
          }),
        ),
    };
    const model = scriptedModel((n) => (n === 1 ? { calls: [["stuck", "{}"]] } : { say: "gave up" }));
    const { executor } = build(model, [stuck]);
    const r = await executor.execute(input(), callInfo());
    expect(signalled).toBe(true);
    expect(r.toolCalls![0]).toMatchObject({ outcome: "timeout", output: "the tool timed out after 50 ms" });
    expect(r.output).toBe("gave up");
  });

  it("abandons a tool that ignores its signal, records it, and goes on", async () => {
    const deaf: Tool = { name: "deaf", description: "", inputSchema: { type: "object" }, timeoutMs: 20, execute: () => sleep(5_000).then(() => "late") };
    const model = scriptedModel((n) => (n === 1 ? { calls: [["deaf", "{}"]] } : { say: "moved on" }));
    const { executor } = build(model, [deaf], { abandonAfterMs: 50 });
    const r = await executor.execute(input(), callInfo());
    expect(r.toolCalls![0]!.outcome).toBe("abandoned");
    expect(r.toolCalls![0]!.output).toMatch(/did not stop within 50 ms/);
    expect(r.output).toBe("moved on");
  });

  it("a tool's ToolError or any throw goes to the model as the tool's error", async () => {
    const failing: Tool = {
      name: "fails",
      description: "",
      inputSchema: { type: "object" },
      execute: () => {
        throw new ToolError("the account is closed");
      },
    };
    const model = scriptedModel((n) => (n === 1 ? { calls: [["fails", "{}"]] } : { say: "noted" }));
    const { executor } = build(model, [failing]);
    const r = await executor.execute(input(), callInfo());
    expect(r.toolCalls![0]).toMatchObject({ outcome: "error", output: "the account is closed" });
    expect(model.requests[1]!.messages.at(-1)).toEqual({ role: "tool", toolCallId: "c1_0", content: "the account is closed" });
  });

  it("cancel reaches a running tool: its signal fires and the call ends CANCELLED", async () => {
    const controller = new AbortController();
    let toolSignal: AbortSignal | undefined;
    const waits: Tool = {
      name: "waits",
      description: "",
      inputSchema: { type: "object" },
      execute: (_args, ctx) => {
        toolSignal = ctx.signal;
        setTimeout(() => controller.abort(new ConnectError("client cancelled", Code.Canceled)), 10);
        return new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
      },
    };
    const model = scriptedModel(() => ({ calls: [["waits", "{}"]] }));
    const { executor } = build(model, [waits]);
    const err = await rejection(executor.execute(input(), callInfo(controller.signal)));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Canceled);
    expect(toolSignal?.aborted).toBe(true);
    expect(model.requests).toHaveLength(1);
  });

  it("stops before the call's deadline with what it has instead of failing", async () => {
    const slow: Tool = {
      name: "slow",
      description: "",
      inputSchema: { type: "object" },
      execute: (_args, ctx) => new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))),
    };
    const model = scriptedModel(() => ({ say: "working. ", calls: [["slow", "{}"]] }));
    const { executor } = build(model, [slow]);
    const r = await executor.execute(input(), callInfo(new AbortController().signal, Date.now() + 300));
    expect(r.finishReason).toBe("deadline");
    expect(r.output).toBe("working. ");
    expect(r.toolCalls![0]!.outcome).toBe("cancelled");
  });

  it("never runs a finished tool again when a later step is retried", async () => {
    let ran = 0;
    const counted: Tool = { name: "once", description: "", inputSchema: { type: "object" }, execute: () => `ran ${++ran}` };
    let step2Attempts = 0;
    const model: LlmProvider = {
      capabilities: { tools: true },
      async *stream(req) {
        if (!req.messages.some((m) => m.role === "tool")) {
          yield { type: "tool_call", index: 0, call: { id: "x", name: "once", arguments: "{}" } };
          yield { type: "finish", finishReason: "tool_calls" };
          return;
        }
        if (++step2Attempts < 3) throw new ProviderError("upstream hiccup", Code.Unavailable, true);
        yield { type: "delta", text: "done" };
        yield { type: "finish", finishReason: "stop" };
      },
    };
    const { executor } = build(model, [counted]);
    const r = await executor.execute(input(), callInfo());
    expect(r.output).toBe("done");
    expect(step2Attempts).toBe(3);
    expect(ran).toBe(1);
  });

  it("lets a middleware refuse a call or rewrite its arguments, in pipeline order", async () => {
    const seen: string[] = [];
    const guard: Middleware = {
      name: "guard",
      process: (_ctx, next) => next(),
      toolCall(_ctx, { call, args }) {
        seen.push(call.arguments);
        if ((args as { a: number }).a > 100) return { deny: "too big" };
        if ((args as { a: number }).a < 0) return { arguments: '{"a":0,"b":0}' };
        return undefined;
      },
    };
    const model = scriptedModel((n) =>
      n === 1
        ? {
            calls: [
              ["add", '{"a":1000,"b":1}'],
              ["add", '{"a":-5,"b":1}'],
            ],
          }
        : { say: "ok" },
    );
    const { executor } = build(model, [add], { middleware: [guard] });
    const r = await executor.execute(input(), callInfo());
    expect(r.toolCalls!.map((c) => [c.outcome, c.arguments, c.output])).toEqual([
      ["denied", '{"a":1000,"b":1}', "refused by guard: too big"],
      ["ok", '{"a":0,"b":0}', '{"sum":0}'],
    ]);
    expect(seen).toEqual(['{"a":1000,"b":1}', '{"a":-5,"b":1}']);
  });

  it("stores the tool turn in the session so the next turn's prompt is a valid conversation", async () => {
    const model = scriptedModel((n) => (n === 1 ? { calls: [["add", '{"a":1,"b":2}']] } : { say: n === 2 ? "3" : "hi again" }));
    const { executor, sessions } = build(model, [add]);
    const session = await sessions.create("alice", "helper", {}, 600);
    await executor.execute(input({ sessionId: session.id }), callInfo());
    const expected: ChatMessage[] = [
      { role: "user", content: "what is 1+2?" },
      { role: "assistant", content: "", toolCalls: [{ id: "c1_0", name: "add", arguments: '{"a":1,"b":2}' }] },
      { role: "tool", toolCallId: "c1_0", content: '{"sum":3}' },
      { role: "assistant", content: "3" },
    ];
    expect((await sessions.read(session.id, "alice")).messages).toEqual(expected);
    await executor.execute(input({ sessionId: session.id, task: "thanks" }), callInfo());
    expect(model.requests[2]!.messages).toEqual([...expected, { role: "user", content: "thanks" }]);
  });

  it("publishes TOOL_CALLED and TOOL_COMPLETED", async () => {
    const model = scriptedModel((n) => (n === 1 ? { calls: [["add", '{"a":1,"b":2}']] } : { say: "3" }));
    const { executor, events } = build(model, [add]);
    const seen: RuntimeEvent[] = [];
    events.subscribe(["TOOL_CALLED", "TOOL_COMPLETED"], (e) => void seen.push(e));
    await executor.execute(input(), callInfo());
    await new Promise((r) => setImmediate(r));
    expect(seen.map((e) => [e.type, e.data.tool, e.data.outcome])).toEqual([
      ["TOOL_CALLED", "add", undefined],
      ["TOOL_COMPLETED", "add", "ok"],
    ]);
  });

  it("narrows the agent's tools by the call's list, never widening them", async () => {
    const mul: Tool = { name: "mul", description: "", inputSchema: { type: "object" }, execute: () => 0 };
    const secret: Tool = { name: "secret", description: "", inputSchema: { type: "object" }, execute: () => "s" };
    const model = scriptedModel(() => ({ say: "ok" }));
    const { executor } = build(model, [add, mul, secret], { agent: { tools: ["add", "mul"] } });
    await executor.execute(input(), callInfo());
    await executor.execute(input({ options: { tools: ["mul", "secret"] } }), callInfo());
    expect(model.requests.map((r) => r.tools?.map((t) => t.name))).toEqual([["add", "mul"], ["mul"]]);
  });

  it("a plain agent streams as before: no step events", async () => {
    const model = scriptedModel(() => ({ say: "hello there" }));
    const { executor } = build(model, [add], { agent: { tools: [] } });
    const events = await collect(executor.stream(input(), callInfo()));
    expect(events.map((e) => e.type)).toEqual(["started", "delta", "delta", "completed"]);
    expect(model.requests[0]!.tools).toBeUndefined();
    expect(result(events).toolCalls).toBeUndefined();
  });
});

describe("structured output", () => {
  const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false };

  it("parses and validates the final answer", async () => {
    const model = scriptedModel(() => ({ say: '{"city": "Paris"}' }));
    const { executor } = build(model, [], { agent: { tools: [], outputSchema: schema } });
    const r = await executor.execute(input(), callInfo());
    expect(r.success).toBe(true);
    expect(r.structuredOutput).toEqual({ city: "Paris" });
    expect(r.output).toBe('{"city": "Paris"}');
    // The provider cannot take response_format: the system prompt asks for the JSON.
    expect(model.requests[0]!.messages[0]!.content).toMatch(/JSON Schema: \{"type":"object"/);
  });

  it("gives a non-conforming answer one repair step", async () => {
    const model = scriptedModel((n) => ({ say: n === 1 ? "Paris!" : '```json\n{"city": "Paris"}\n```' }));
    const { executor } = build(model, [], { agent: { tools: [], outputSchema: schema } });
    const r = await executor.execute(input(), callInfo());
    expect(r.structuredOutput).toEqual({ city: "Paris" });
    expect(r.steps).toBe(2);
    expect(model.requests[1]!.messages.slice(-2)).toEqual([
      { role: "assistant", content: "Paris!" },
      { role: "user", content: expect.stringMatching(/^Your answer did not match the required JSON Schema: the answer is not JSON/) },
    ]);
  });

  it("says so in the result when the repair fails too; the call itself succeeds", async () => {
    const model = scriptedModel(() => ({ say: '{"town": "Paris"}' }));
    const { executor } = build(model, [], { agent: { tools: [] } });
    const r = await executor.execute(input({ options: { outputSchema: schema } }), callInfo());
    expect(r.success).toBe(false);
    expect(r.output).toBe('{"town": "Paris"}');
    expect(r.validationErrors).toEqual(expect.arrayContaining([expect.stringMatching(/must have required property 'city'/)]));
    expect(model.requests).toHaveLength(2);
  });

  it("sends response_format to a provider that supports it", async () => {
    const model = scriptedModel(() => ({ say: '{"city":"Oslo"}' }), { tools: true, structuredOutput: true });
    const { executor } = build(model, [], { agent: { tools: [] } });
    await executor.execute(input({ options: { outputSchema: schema } }), callInfo());
    expect(model.requests[0]!.responseFormat).toEqual({ name: "answer", schema });
    expect(model.requests[0]!.messages.some((m) => m.role === "system")).toBe(false);
  });
});
