import {
  type AgentDefinition,
  Code,
  ConnectError,
  type LlmProvider,
  type Middleware,
  type ProviderChunk,
  ProviderError,
  type ProviderRequest,
  type RunEvent,
  type RuntimeEvent,
} from "@qingyu/plugin-api";
import { afterEach, describe, it, expect } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import type { CallInfo, ExecuteInput } from "../../src/executor/context.ts";
import type { RetryPolicy } from "../../src/executor/retry.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { testExecutor } from "../support/executor.ts";
import { BatchGate } from "../../src/executor/batch-gate.ts";
import { Admission } from "../../src/pipeline/admission.ts";
import { rejection } from "../support/rejection.ts";

const agents: AgentDefinition[] = [
  { id: "helper", description: "", provider: "fake", model: "fake-model", models: ["bigger"], systemPrompt: "Be brief.", defaults: {} },
  { id: "other", description: "", provider: "fake", model: "other-model", systemPrompt: "", defaults: { temperature: 0.3 } },
  { id: "open", description: "", provider: "fake", model: "open-model", models: ["*"], systemPrompt: "", defaults: {} },
];

const fastRetry: RetryPolicy = { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1000 };

/** A provider double of our LlmProvider interface: records requests and signals, runs `script` per call. */
interface FakeProvider extends LlmProvider {
  requests: ProviderRequest[];
  signals: AbortSignal[];
}

function fakeProvider(script: (req: ProviderRequest, signal: AbortSignal, attempt: number) => AsyncIterable<ProviderChunk>): FakeProvider {
  const requests: ProviderRequest[] = [];
  const signals: AbortSignal[] = [];
  return {
    requests,
    signals,
    stream(req, signal) {
      requests.push(structuredClone(req));
      signals.push(signal);
      return script(req, signal, requests.length);
    },
  };
}

/** Replies with the words of `reply(req)` as deltas, then a finish with usage. */
function replying(reply: (req: ProviderRequest) => string = (req) => `re: ${req.messages.at(-1)!.content}`) {
  return fakeProvider(async function* (req) {
    const words = reply(req).split(/(?<= )/);
    for (const word of words) yield { type: "delta", text: word };
    yield { type: "finish", finishReason: "stop", usage: { inputTokens: 7, outputTokens: words.length } };
  });
}

const stores: SessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function build(provider: LlmProvider, options: { middleware?: Middleware[]; retry?: RetryPolicy } = {}) {
  const { executor, sessions, events, store } = testExecutor({
    agents,
    providers: { fake: provider },
    middleware: options.middleware,
    retry: options.retry ?? fastRetry,
  });
  stores.push(store);
  return { executor, sessions, events };
}

function input(overrides: Partial<ExecuteInput> = {}): ExecuteInput {
  return { agentId: "helper", task: "hello world", sessionId: "", userId: "alice", metadata: {}, options: {}, ...overrides };
}

function callInfo(signal: AbortSignal = new AbortController().signal, deadline?: number): CallInfo {
  return { signal, deadline, header: () => undefined };
}

async function collect(stream: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of stream) out.push(event);
  return out;
}

/** Lets the event bus deliver what was published. */
const settle = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));

describe("Executor.stream and execute", () => {
  it("streams started, the deltas in order, then completed last", async () => {
    const { executor } = build(replying());
    const events = await collect(executor.stream(input({ task: "one two three" }), callInfo()));
    expect(events[0]).toEqual({ type: "started", model: "fake-model", agentId: "helper" });
    expect(events.slice(1, -1)).toEqual([
      { type: "delta", text: "re: " },
      { type: "delta", text: "one " },
      { type: "delta", text: "two " },
      { type: "delta", text: "three" },
    ]);
    const last = events.at(-1)!;
    expect(last.type).toBe("completed");
    if (last.type !== "completed") return;
    expect(last.result).toMatchObject({
      success: true,
      output: "re: one two three",
      model: "fake-model",
      finishReason: "stop",
      usage: { inputTokens: 7, outputTokens: 4 },
    });
    expect(last.result.durationMs).toBeGreaterThanOrEqual(0);
  });

  it("execute returns the same result the stream completes with", async () => {
    const { executor } = build(replying());
    const events = await collect(executor.stream(input(), callInfo()));
    const streamed = events.at(-1) as Extract<RunEvent, { type: "completed" }>;
    const result = await executor.execute(input(), callInfo());
    expect({ ...result, durationMs: 0 }).toEqual({ ...streamed.result, durationMs: 0 });
    expect(result.output).toBe("re: hello world");
  });

  it("sends the provider the system prompt, the task, and the per-call options over the agent's defaults", async () => {
    const provider = replying();
    const { executor } = build(provider);
    const result = await executor.execute(input({ options: { model: "bigger", temperature: 1.5, maxTokens: 12 } }), callInfo());
    expect(provider.requests[0]).toMatchObject({
      model: "bigger",
      temperature: 1.5,
      maxTokens: 12,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hello world" },
      ],
    });
    expect(result.model).toBe("bigger");
  });

  it("refuses a model the agent does not offer with PERMISSION_DENIED naming agent and model, calling no provider", async () => {
    const provider = replying();
    const { executor } = build(provider);
    const err = await rejection(executor.execute(input({ agentId: "other", options: { model: "o1-pro" } }), callInfo()));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toContain('agent "other"');
    expect(err.rawMessage).toContain('"o1-pro"');
    const listed = await rejection(executor.execute(input({ options: { model: "fine-tune\nforged line" } }), callInfo()));
    expect(listed.code).toBe(Code.PermissionDenied);
    expect(listed.rawMessage).toContain('"fine-tune\\nforged line"'); // quoted: no line break of the caller's in our message
    expect(provider.requests).toHaveLength(0);
  });

  it('serves the agent\'s own model when asked by name, and any model for an agent listing "*"', async () => {
    const provider = replying();
    const { executor } = build(provider);
    expect((await executor.execute(input({ agentId: "other", options: { model: "other-model" } }), callInfo())).model).toBe("other-model");
    expect((await executor.execute(input({ agentId: "open", options: { model: "anything-at-all" } }), callInfo())).model).toBe("anything-at-all");
  });

  it("an unknown agent is NOT_FOUND, and no provider is called", async () => {
    const provider = replying();
    const { executor } = build(provider);
    const err = await rejection(executor.execute(input({ agentId: "nobody" }), callInfo()));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain("nobody");
    expect(provider.requests).toHaveLength(0);
  });
});

describe("Executor: retries", () => {
  it("retries a retryable failure before the first token, and succeeds on the third attempt", async () => {
    const provider = fakeProvider(async function* (_req, _signal, attempt) {
      if (attempt < 3) throw new ProviderError("upstream down", Code.Unavailable, true);
      yield { type: "delta", text: "finally" };
    });
    const { executor } = build(provider);
    const events = await collect(executor.stream(input(), callInfo()));
    expect(provider.requests).toHaveLength(3);
    // The client sees one clean run: one started, the text once.
    expect(events.map((e) => e.type)).toEqual(["started", "delta", "completed"]);
    const last = events.at(-1) as Extract<RunEvent, { type: "completed" }>;
    expect(last.result).toMatchObject({ success: true, output: "finally" });
  });

  it("gives up after maxAttempts with the provider's code", async () => {
    const provider = fakeProvider(async function* () {
      throw new ProviderError("upstream down", Code.Unavailable, true);
    });
    const { executor } = build(provider);
    const err = await rejection(executor.execute(input(), callInfo()));
    expect(err.code).toBe(Code.Unavailable);
    expect(provider.requests).toHaveLength(3);
  });

  it("does not retry a non-retryable error, which surfaces with its code", async () => {
    const provider = fakeProvider(async function* () {
      throw new ProviderError("bad model", Code.InvalidArgument, false);
    });
    const { executor } = build(provider);
    const err = await rejection(executor.execute(input(), callInfo()));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("bad model");
    expect(provider.requests).toHaveLength(1);
  });

  it("does not retry a plain ConnectError from the provider", async () => {
    const provider = fakeProvider(async function* () {
      throw new ConnectError("down", Code.Unavailable);
    });
    const { executor } = build(provider);
    expect((await rejection(executor.execute(input(), callInfo()))).code).toBe(Code.Unavailable);
    expect(provider.requests).toHaveLength(1);
  });

  it("does not retry a failure after the first delta", async () => {
    const provider = fakeProvider(async function* () {
      yield { type: "delta", text: "partial " };
      throw new ProviderError("connection reset", Code.Unavailable, true);
    });
    const { executor } = build(provider);
    const seen: RunEvent[] = [];
    const err = await rejection(
      (async () => {
        for await (const event of executor.stream(input(), callInfo())) seen.push(event);
      })(),
    );
    expect(err.code).toBe(Code.Unavailable);
    expect(provider.requests).toHaveLength(1);
    expect(seen).toEqual([
      { type: "started", model: "fake-model", agentId: "helper" },
      { type: "delta", text: "partial " },
    ]);
  });

  it("waits at least the provider's Retry-After before the next attempt", async () => {
    const attemptTimes: number[] = [];
    const provider = fakeProvider(async function* (_req, _signal, attempt) {
      attemptTimes.push(Date.now());
      if (attempt === 1) throw new ProviderError("slow down", Code.ResourceExhausted, true, 50);
      yield { type: "delta", text: "ok" };
    });
    const { executor } = build(provider);
    expect((await executor.execute(input(), callInfo())).output).toBe("ok");
    expect(attemptTimes).toHaveLength(2);
    // Timers may fire a millisecond early against Date.now's rounding.
    expect(attemptTimes[1]! - attemptTimes[0]!).toBeGreaterThanOrEqual(48);
  });

  it("does not retry when the wait would pass the call's deadline", async () => {
    const provider = fakeProvider(async function* () {
      throw new ProviderError("slow down", Code.ResourceExhausted, true, 500);
    });
    const { executor } = build(provider);
    const err = await rejection(executor.execute(input(), callInfo(undefined, Date.now() + 100)));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(provider.requests).toHaveLength(1);
  });
});

describe("Executor: cancellation", () => {
  it("aborting the call mid-stream aborts the provider's signal and rejects with CANCELLED", async () => {
    const provider = fakeProvider(async function* (_req, signal) {
      yield { type: "delta", text: "first " };
      await sleep(60_000, undefined, { signal }); // the next token never comes before the cancel
      yield { type: "delta", text: "never" };
    });
    const { executor, events } = build(provider);
    const errors: RuntimeEvent[] = [];
    events.subscribe(["ERROR_OCCURRED"], (e) => void errors.push(e));
    const controller = new AbortController();
    const reason = new ConnectError("client cancelled", Code.Canceled);
    const seen: RunEvent[] = [];
    const err = await rejection(
      (async () => {
        for await (const event of executor.stream(input(), callInfo(controller.signal))) {
          seen.push(event);
          if (event.type === "delta") setTimeout(() => controller.abort(reason), 10);
        }
      })(),
    );
    expect(err.code).toBe(Code.Canceled);
    expect(seen.map((e) => e.type)).toEqual(["started", "delta"]);
    expect(provider.signals[0]!.aborted).toBe(true);
    expect(provider.signals[0]!.reason).toBe(reason);
    await settle();
    expect(errors.map((e) => e.data.code)).toEqual(["CANCELLED"]);
  });

  it("a cancel during the retry wait stops retrying", async () => {
    const provider = fakeProvider(async function* () {
      throw new ProviderError("slow down", Code.ResourceExhausted, true, 500);
    });
    const { executor } = build(provider);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new ConnectError("client cancelled", Code.Canceled)), 10);
    const err = await rejection(executor.execute(input(), callInfo(controller.signal)));
    expect(err.code).toBe(Code.Canceled);
    expect(provider.requests).toHaveLength(1);
  });
});

describe("Executor: sessions", () => {
  it("appends the turn after completion, so the next call's request carries the history", async () => {
    const provider = replying();
    const { executor, sessions } = build(provider);
    const session = await sessions.create("alice", "helper", {}, 0);

    await executor.execute(input({ sessionId: session.id, task: "q1" }), callInfo());
    expect((await sessions.read(session.id, "alice")).messages).toEqual([
      { role: "user", content: "q1" },
      { role: "assistant", content: "re: q1" },
    ]);

    await executor.execute(input({ sessionId: session.id, task: "q2" }), callInfo());
    expect(provider.requests[1]!.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "q1" },
      { role: "assistant", content: "re: q1" },
      { role: "user", content: "q2" },
    ]);
  });

  it("the turn is stored by the time the client sees completed", async () => {
    const { executor, sessions } = build(replying());
    const session = await sessions.create("alice", "helper", {}, 0);
    let atCompletion: number | undefined;
    for await (const event of executor.stream(input({ sessionId: session.id }), callInfo())) {
      if (event.type === "completed") atCompletion = (await sessions.read(session.id, "alice")).messages.length;
    }
    expect(atCompletion).toBe(2);
  });

  it("a failed run leaves the session unchanged", async () => {
    const provider = fakeProvider(async function* () {
      throw new ProviderError("bad", Code.InvalidArgument, false);
    });
    const { executor, sessions } = build(provider);
    const session = await sessions.create("alice", "helper", {}, 0);
    await rejection(executor.execute(input({ sessionId: session.id }), callInfo()));
    const after = await sessions.read(session.id, "alice");
    expect(after.messages).toEqual([]);
    expect(after.version).toBe(0);
  });

  it("another user's session is PERMISSION_DENIED, and the provider is not called", async () => {
    const provider = replying();
    const { executor, sessions } = build(provider);
    const session = await sessions.create("alice", "helper", {}, 0);
    const err = await rejection(executor.execute(input({ sessionId: session.id, userId: "mallory" }), callInfo()));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(provider.requests).toHaveLength(0);
    expect((await sessions.read(session.id, "alice")).messages).toEqual([]);
  });

  // Ownership is checked lazily; a middleware that answers itself (a cache hit) must not skip it.
  it("a short-circuiting middleware does not let another user write into a session", async () => {
    const cache: Middleware = {
      name: "cache",
      async *process() {
        yield {
          type: "completed",
          result: {
            success: true,
            output: "cached",
            model: "m",
            finishReason: "stop",
            usage: { inputTokens: 0, outputTokens: 0 },
            durationMs: 0,
            metadata: {},
          },
        };
      },
    };
    const { executor, sessions } = build(replying(), { middleware: [cache] });
    const session = await sessions.create("alice", "helper", {}, 0);
    const err = await executor.execute(input({ sessionId: session.id, userId: "mallory", task: "injected" }), callInfo()).then(
      () => undefined,
      (e: unknown) => e as ConnectError,
    );
    expect((await sessions.read(session.id, "alice")).messages).toEqual([]);
    expect(err?.code).toBe(Code.PermissionDenied);
  });

  it("an empty agent_id with a session uses the session's agent", async () => {
    const provider = replying();
    const { executor, sessions } = build(provider);
    const session = await sessions.create("alice", "other", {}, 0);
    const events = await collect(executor.stream(input({ agentId: "", sessionId: session.id }), callInfo()));
    expect(events[0]).toEqual({ type: "started", model: "other-model", agentId: "other" });
    expect(provider.requests[0]).toMatchObject({ model: "other-model", temperature: 0.3 });
    // "other" has no system prompt.
    expect(provider.requests[0]!.messages[0]).toEqual({ role: "user", content: "hello world" });
  });

  it("an agent_id that differs from the session's agent is INVALID_ARGUMENT naming agent_id", async () => {
    const provider = replying();
    const { executor, sessions } = build(provider);
    const session = await sessions.create("alice", "other", {}, 0);
    const err = await rejection(executor.execute(input({ agentId: "helper", sessionId: session.id }), callInfo()));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("agent_id");
    expect(provider.requests).toHaveLength(0);
  });

  it("an unknown session is NOT_FOUND", async () => {
    const { executor } = build(replying());
    const err = await rejection(executor.execute(input({ sessionId: "ghost" }), callInfo()));
    expect(err.code).toBe(Code.NotFound);
  });
});

describe("Executor.batch", () => {
  it("returns results in request order, running at most `concurrency` at once", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const provider = fakeProvider(async function* (req) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        const n = Number(req.messages.at(-1)!.content);
        await sleep(n % 2 === 0 ? 12 : 3); // later items often finish first
        yield { type: "delta", text: `answer ${n}` };
      } finally {
        inFlight--;
      }
    });
    const { executor } = build(provider);
    const inputs = Array.from({ length: 8 }, (_, i) => input({ task: String(i) }));
    const outcomes = await executor.batch(inputs, 3, callInfo());
    expect(outcomes).toHaveLength(8);
    expect(outcomes.map((o) => ("result" in o ? o.result.output : `error ${o.error.code}`))).toEqual(Array.from({ length: 8 }, (_, i) => `answer ${i}`));
    expect(maxInFlight).toBeLessThanOrEqual(3);
    expect(maxInFlight).toBeGreaterThan(1);
    expect(provider.requests).toHaveLength(8);
  });

  it("one failing item is that item's error; the others succeed", async () => {
    const provider = fakeProvider(async function* (req) {
      const task = req.messages.at(-1)!.content;
      if (task === "bad") throw new ProviderError("rejected", Code.InvalidArgument, false);
      yield { type: "delta", text: task.toUpperCase() };
    });
    const { executor } = build(provider);
    const outcomes = await executor.batch(
      [input({ task: "a" }), input({ task: "bad" }), input({ agentId: "nobody", task: "c" }), input({ task: "d" })],
      2,
      callInfo(),
    );
    expect(outcomes).toHaveLength(4);
    expect(outcomes[0]).toMatchObject({ result: { output: "A" } });
    expect("error" in outcomes[1]! && outcomes[1].error.code).toBe(Code.InvalidArgument);
    expect("error" in outcomes[2]! && outcomes[2].error.code).toBe(Code.NotFound);
    expect(outcomes[3]).toMatchObject({ result: { output: "D" } });
  });

  it("reports each item's session id and stores each item's turn", async () => {
    const { executor, sessions } = build(replying());
    const s1 = await sessions.create("alice", "helper", {}, 0);
    const s2 = await sessions.create("alice", "helper", {}, 0);
    const outcomes = await executor.batch([input({ sessionId: s1.id, task: "one" }), input({ sessionId: s2.id, task: "two" })], 2, callInfo());
    expect(outcomes.map((o) => o.sessionId)).toEqual([s1.id, s2.id]);
    expect((await sessions.read(s1.id, "alice")).messages.map((m) => m.content)).toEqual(["one", "re: one"]);
    expect((await sessions.read(s2.id, "alice")).messages.map((m) => m.content)).toEqual(["two", "re: two"]);
  });

  it("a cancelled batch rejects with the cancel reason", async () => {
    const provider = fakeProvider(async function* (_req, signal) {
      await sleep(60_000, undefined, { signal });
      yield { type: "delta", text: "never" };
    });
    const { executor } = build(provider);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new ConnectError("client cancelled", Code.Canceled)), 10);
    const err = await rejection(executor.batch([input(), input(), input()], 2, callInfo(controller.signal)));
    expect(err.code).toBe(Code.Canceled);
    expect(provider.requests).toHaveLength(2);
  });
});

describe("Executor.batch under a BatchGate", () => {
  it("holds one gate slot per running item: a second batch waits for the first's slots", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const provider = fakeProvider(async function* (req) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await sleep(2);
        yield { type: "delta", text: req.messages.at(-1)!.content };
      } finally {
        inFlight--;
      }
    });
    const { executor } = build(provider);
    const gate = new BatchGate({ maxItemsInFlight: 3, maxQueuedItems: 100 });
    const inputs = Array.from({ length: 10 }, (_, i) => input({ task: String(i) }));
    const run = () => {
      const ticket = gate.admit(inputs.length);
      return executor.batch(inputs, 4, callInfo(), ticket).finally(() => ticket.close());
    };
    const [a, b] = await Promise.all([run(), run()]);
    expect([...a, ...b].every((o) => "result" in o)).toBe(true);
    expect(maxInFlight).toBe(3);
    expect(gate.load).toEqual({ inFlight: 0, queued: 0 });
  });

  it("lets timers and I/O run between items even when every item completes in microtasks", async () => {
    const provider = fakeProvider(async function* () {
      yield { type: "delta", text: "instant" };
    });
    const { executor } = build(provider);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    try {
      await executor.batch(
        Array.from({ length: 50 }, () => input()),
        1,
        callInfo(),
      );
    } finally {
      clearInterval(timer);
    }
    // Without a turn of the event loop between items, the interval never fires during the batch.
    expect(ticks).toBeGreaterThan(0);
  });
});

describe("Executor: events", () => {
  it("publishes AGENT_STARTED and AGENT_COMPLETED for a successful run", async () => {
    const { executor, events } = build(replying());
    const seen: RuntimeEvent[] = [];
    events.subscribe("any", (e) => void seen.push(e));
    await executor.execute(input(), callInfo());
    await settle();
    expect(seen.map((e) => e.type)).toEqual(["AGENT_STARTED", "AGENT_COMPLETED"]);
    const [started, completed] = seen;
    expect(started).toMatchObject({ agentId: "helper", userId: "alice" });
    expect(completed).toMatchObject({ agentId: "helper", userId: "alice", data: { model: "fake-model", inputTokens: 7, outputTokens: 3 } });
    expect(typeof started!.data.callId).toBe("string");
    expect(completed!.data.callId).toBe(started!.data.callId);
  });

  it("publishes ERROR_OCCURRED with the status code name for a failed run", async () => {
    const { executor, events } = build(replying());
    const seen: RuntimeEvent[] = [];
    events.subscribe("any", (e) => void seen.push(e));
    await rejection(executor.execute(input({ agentId: "nobody" }), callInfo()));
    await settle();
    const errors = seen.filter((e) => e.type === "ERROR_OCCURRED");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ agentId: "nobody", data: { code: "NOT_FOUND" } });
    expect(seen.some((e) => e.type === "AGENT_COMPLETED")).toBe(false);
  });

  it("publishes MIDDLEWARE_EXECUTED per middleware with its status when someone listens", async () => {
    const passThrough = (name: string): Middleware => ({
      name,
      async *process(_ctx, next) {
        yield* next();
      },
    });
    const provider = fakeProvider(async function* (req) {
      if (req.messages.at(-1)!.content === "fail") throw new ProviderError("bad", Code.InvalidArgument, false);
      yield { type: "delta", text: "ok" };
    });
    const { executor, events } = build(provider, { middleware: [passThrough("outer"), passThrough("inner")] });
    const seen: RuntimeEvent[] = [];
    events.subscribe(["MIDDLEWARE_EXECUTED"], (e) => void seen.push(e));
    await executor.execute(input(), callInfo());
    await rejection(executor.execute(input({ task: "fail" }), callInfo()));
    await settle();
    expect(seen.map((e) => [e.data.middleware, e.data.status])).toEqual([
      ["inner", "OK"],
      ["outer", "OK"],
      ["inner", "INVALID_ARGUMENT"],
      ["outer", "INVALID_ARGUMENT"],
    ]);
  });
});

describe("Executor: middleware errors", () => {
  it("a middleware that throws a plain Error fails the call with INTERNAL", async () => {
    const provider = replying();
    const broken: Middleware = {
      name: "broken",
      process() {
        throw new Error("null pointer in plugin");
      },
    };
    const { executor } = build(provider, { middleware: [broken] });
    const err = await rejection(executor.execute(input(), callInfo()));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toContain("null pointer in plugin");
    expect(provider.requests).toHaveLength(0);
  });

  it("a plain Error thrown in a middleware's post-processing is INTERNAL too", async () => {
    const broken: Middleware = {
      name: "broken-after",
      async *process(_ctx, next) {
        yield* next();
        throw new TypeError("cannot read properties of undefined");
      },
    };
    const { executor } = build(replying(), { middleware: [broken] });
    const err = await rejection(executor.execute(input(), callInfo()));
    expect(err.code).toBe(Code.Internal);
  });

  it("a middleware's ConnectError passes through with its code", async () => {
    const deny: Middleware = {
      name: "auth",
      process() {
        throw new ConnectError("no token", Code.Unauthenticated);
      },
    };
    const { executor } = build(replying(), { middleware: [deny] });
    expect((await rejection(executor.execute(input(), callInfo()))).code).toBe(Code.Unauthenticated);
  });

  it("a short-circuiting middleware's result is what the client gets, with a started first", async () => {
    const provider = replying();
    const cache: Middleware = {
      name: "cache",
      async *process() {
        yield {
          type: "completed",
          result: {
            success: true,
            output: "cached",
            model: "cache-model",
            finishReason: "stop",
            usage: { inputTokens: 0, outputTokens: 0 },
            durationMs: 0,
            metadata: { cache: "hit" },
          },
        };
      },
    };
    const { executor } = build(provider, { middleware: [cache] });
    const events = await collect(executor.stream(input(), callInfo()));
    expect(events.map((e) => e.type)).toEqual(["started", "completed"]);
    expect(events.at(-1)).toMatchObject({ result: { output: "cached", metadata: { cache: "hit" } } });
    expect(provider.requests).toHaveLength(0);
  });
});

describe("Executor: a call the transport admitted", () => {
  it("starts its onion with the principal it was admitted with, so the credential is verified once", async () => {
    let verifications = 0;
    const seen: Array<string | undefined> = [];
    const alice = { id: "alice", admin: false, roles: [], method: "test" };
    // Verifies in admit (headers, before decoding) and, like the auth plugin, in process only when no principal is known.
    const gate: Middleware = {
      name: "gate",
      admit(rpc) {
        verifications++;
        rpc.principal = alice;
      },
      process(ctx, next) {
        if (!ctx.principal) {
          verifications++;
          ctx.principal = alice;
        }
        seen.push(ctx.principal.id);
        return next();
      },
    };
    const admission = new Admission([gate]);
    const { executor, store } = testExecutor({ agents, providers: { fake: replying() }, middleware: [gate], admission });
    stores.push(store);
    const admitted = callInfo();
    await admission.admit(admitted, "qingyu.agent.v1.AgentService", "Execute");
    await executor.execute(input(), admitted);
    expect([verifications, seen]).toEqual([1, ["alice"]]);
    // One the transport did not admit here (a reload came between) is verified by the onion.
    await executor.execute(input(), callInfo());
    expect([verifications, seen]).toEqual([2, ["alice", "alice"]]);
  });
});
