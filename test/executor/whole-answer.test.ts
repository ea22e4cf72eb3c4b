// A unary Execute asks a provider that has `generate` for the whole answer at once; everything
// that streams (ExecuteStream, durable runs) and every middleware that asks to see the answer
// as it streams keeps `stream`. Both paths must give the client and the middleware the same run.
import {
  type AgentRunResult,
  Code,
  type LlmProvider,
  type Middleware,
  type ProviderChunk,
  ProviderError,
  type ProviderRequest,
  type ProviderResult,
  type RunEvent,
} from "@qingyu/plugin-api";
import { SpanKind } from "@opentelemetry/api";
import type { DataPoint, Histogram } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AgentRegistry } from "../../src/agents/registry.ts";
import type { CallInfo, ExecuteInput } from "../../src/executor/context.ts";
import { Executor } from "../../src/executor/executor.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { Telemetry } from "../../src/telemetry/setup.ts";
import { add, agent, testExecutor } from "../support/executor.ts";
import { rejection } from "../support/rejection.ts";

/** What the stand-in model answers to its nth request: text, tool calls ([name, argumentsJson]), or a failure. */
type Turn = { say?: string; calls?: [string, string][]; fail?: Error };

/**
 * A model double that answers both ways from one script and counts which way it was asked.
 * `pieces`: its stream cuts text at words and each call's arguments in two, as real providers do.
 */
function model(script: (n: number) => Turn, options: { generate?: boolean; pieces?: boolean } = {}) {
  const requests: ProviderRequest[] = [];
  const turn = (req: ProviderRequest) => {
    requests.push(req);
    const t = script(requests.length);
    if (t.fail) throw t.fail;
    return {
      n: requests.length,
      text: t.say ?? "",
      calls: (t.calls ?? []).map(([name, args], i) => ({ id: `c${requests.length}_${i}`, name, arguments: args })),
    };
  };
  const usage = { inputTokens: 10, outputTokens: 2 };
  const provider: LlmProvider & { requests: ProviderRequest[]; streamed: number; generated: number } = {
    requests,
    streamed: 0,
    generated: 0,
    capabilities: { tools: true },
    async *stream(req): AsyncIterable<ProviderChunk> {
      provider.streamed++;
      const { text, calls } = turn(req);
      for (const piece of options.pieces ? text.split(/(?<= )/) : [text]) if (piece) yield { type: "delta", text: piece };
      for (const [index, call] of calls.entries()) {
        const cut = options.pieces ? Math.ceil(call.arguments.length / 2) : call.arguments.length;
        yield { type: "tool_call_delta", index, id: call.id, name: call.name, argumentsDelta: call.arguments.slice(0, cut) };
        if (cut < call.arguments.length) yield { type: "tool_call_delta", index, argumentsDelta: call.arguments.slice(cut) };
      }
      for (const [index, call] of calls.entries()) yield { type: "tool_call", index, call };
      yield { type: "finish", finishReason: calls.length ? "tool_calls" : "stop", usage, model: "m-2024" };
    },
  };
  if (options.generate !== false) {
    provider.generate = async (req): Promise<ProviderResult> => {
      provider.generated++;
      const { text, calls } = turn(req);
      return { text, toolCalls: calls.length ? calls : undefined, finishReason: calls.length ? "tool_calls" : "stop", usage, model: "m-2024" };
    };
  }
  return provider;
}

const addThenAnswer = (n: number): Turn => (n === 1 ? { say: "Let me add. ", calls: [["add", '{"a":1,"b":2}']] } : { say: "It is 3." });

const stores: SessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function build(provider: LlmProvider, middleware: Middleware[] = []) {
  const built = testExecutor({ agents: [agent()], providers: { model: provider }, tools: [add], middleware });
  stores.push(built.store);
  return built.executor;
}

function input(overrides: Partial<ExecuteInput> = {}): ExecuteInput {
  return { agentId: "helper", task: "what is 1+2?", sessionId: "", userId: "alice", metadata: {}, options: {}, ...overrides };
}

function callInfo(): CallInfo {
  return { signal: new AbortController().signal, header: () => undefined };
}

async function collect(stream: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of stream) out.push(event);
  return out;
}

/** A middleware that passes the run through and keeps every event it saw. */
function watcher(options: { needsStreaming?: boolean } = {}): Middleware & { seen: RunEvent[] } {
  const seen: RunEvent[] = [];
  return {
    name: "watcher",
    ...options,
    seen,
    async *process(_ctx, next) {
      for await (const event of next()) {
        seen.push(event);
        yield event;
      }
    },
  };
}

// Durations are the only thing two runs of the same answer may differ in.
function timeless(result: AgentRunResult): AgentRunResult {
  return { ...result, durationMs: 0, toolCalls: result.toolCalls?.map((r) => ({ ...r, durationMs: 0 })) };
}
const timelessEvents = (events: RunEvent[]) =>
  events.map((e) =>
    e.type === "completed" ? { ...e, result: timeless(e.result) } : e.type === "tool_result" ? { ...e, record: { ...e.record, durationMs: 0 } } : e,
  );

const completedResult = (events: RunEvent[]) => (events.at(-1) as Extract<RunEvent, { type: "completed" }>).result;

describe("Execute asks for the whole answer", () => {
  it("calls generate, never stream, and returns what ExecuteStream of the same answers completes with, through a tool step", async () => {
    const whole = model(addThenAnswer);
    const result = await build(whole).execute(input(), callInfo());
    expect([whole.generated, whole.streamed]).toEqual([2, 0]);

    const streaming = model(addThenAnswer, { pieces: true });
    const streamed = completedResult(await collect(build(streaming).stream(input(), callInfo())));
    expect([streaming.generated, streaming.streamed]).toEqual([0, 2]);

    expect(timeless(result)).toEqual(timeless(streamed));
    expect(result).toMatchObject({
      output: "Let me add. It is 3.",
      model: "m-2024",
      finishReason: "stop",
      usage: { inputTokens: 20, outputTokens: 4 },
      steps: 2,
      toolCalls: [expect.objectContaining({ id: "c1_0", name: "add", arguments: '{"a":1,"b":2}', outcome: "ok", output: '{"sum":3}' })],
    });
    // The second step's request carries the call and its result as a streamed step's does.
    expect(whole.requests[1]!.messages.slice(-2)).toEqual(streaming.requests[1]!.messages.slice(-2));
  });

  it("gives a middleware the same events, in the same order, as a stream of the same answer", async () => {
    const wholeWatcher = watcher();
    const whole = model(addThenAnswer);
    await build(whole, [wholeWatcher]).execute(input(), callInfo());
    expect(whole.generated).toBe(2);

    const streamWatcher = watcher();
    await collect(build(model(addThenAnswer), [streamWatcher]).stream(input(), callInfo()));

    expect(wholeWatcher.seen.map((e) => e.type)).toEqual([
      "started",
      "step_started",
      "delta",
      "tool_call_started",
      "tool_call_delta",
      "step_finished",
      "tool_call",
      "tool_result",
      "step_started",
      "delta",
      "step_finished",
      "completed",
    ]);
    expect(timelessEvents(wholeWatcher.seen)).toEqual(timelessEvents(streamWatcher.seen));
  });

  it("gives a step with no text no delta", async () => {
    const watching = watcher();
    const whole = model((n) => (n === 1 ? { calls: [["add", '{"a":2,"b":2}']] } : { say: "4" }));
    const result = await build(whole, [watching]).execute(input(), callInfo());
    expect(result.output).toBe("4");
    expect(whole.generated).toBe(2);
    const firstStep = watching.seen.slice(
      0,
      watching.seen.findIndex((e) => e.type === "step_finished"),
    );
    expect(firstStep.map((e) => e.type)).toEqual(["started", "step_started", "tool_call_started", "tool_call_delta"]);
  });

  it("answers each batch item whole", async () => {
    const whole = model(() => ({ say: "done" }));
    const outcomes = await build(whole).batch([input(), input({ task: "again" })], 2, callInfo());
    expect(outcomes.map((o) => ("result" in o ? o.result.output : o.error.code))).toEqual(["done", "done"]);
    expect([whole.generated, whole.streamed]).toEqual([2, 0]);
  });

  it("streams when a middleware of the pipeline sets needsStreaming", async () => {
    const streaming = model(addThenAnswer);
    const result = await build(streaming, [watcher(), watcher({ needsStreaming: true })]).execute(input(), callInfo());
    expect(result.output).toBe("Let me add. It is 3.");
    expect([streaming.generated, streaming.streamed]).toEqual([0, 2]);
  });

  it("streams from a provider without generate", async () => {
    const streaming = model(addThenAnswer, { generate: false, pieces: true });
    const result = await build(streaming).execute(input(), callInfo());
    expect(result.output).toBe("Let me add. It is 3.");
    expect(streaming.streamed).toBe(2);
  });

  it("retries a retryable generate failure, and surfaces a non-retryable one with its code", async () => {
    const flaky = model((n) => (n < 3 ? { fail: new ProviderError("busy", Code.Unavailable, true) } : { say: "at last" }));
    expect((await build(flaky).execute(input(), callInfo())).output).toBe("at last");
    expect([flaky.generated, flaky.streamed]).toEqual([3, 0]);

    const refusing = model(() => ({ fail: new ProviderError("bad key", Code.Unauthenticated, false) }));
    const err = await rejection(build(refusing).execute(input(), callInfo()));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(refusing.generated).toBe(1);
  });
});

describe("ExecuteStream", () => {
  it("never calls generate, even when no middleware needs streaming", async () => {
    const streaming = model(addThenAnswer, { pieces: true });
    const events = await collect(build(streaming).stream(input(), callInfo()));
    expect(events.filter((e) => e.type === "delta").map((e) => (e as { text: string }).text)).toEqual(["Let ", "me ", "add. ", "It ", "is ", "3."]);
    expect([streaming.generated, streaming.streamed]).toEqual([0, 2]);
  });
});

describe("a whole answer in traces and metrics", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  beforeAll(async () => {
    telemetry = await Telemetry.start({ env: {}, prometheus: true, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  });
  afterAll(async () => {
    await telemetry?.shutdown();
  });

  // testExecutor takes no telemetry: its sessions and events, with the executor built here.
  function traced(provider: LlmProvider, agentId: string) {
    const built = testExecutor({ agents: [], providers: {} });
    stores.push(built.store);
    return new Executor({
      agents: new AgentRegistry([agent({ id: agentId, tools: [] })]),
      providers: new Map([["model", provider]]),
      middleware: [],
      sessions: built.sessions,
      events: built.events,
      retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
      log: pino({ level: "silent" }),
      telemetry,
    });
  }

  async function firstTokenCount(agentId: string): Promise<number> {
    const { resourceMetrics } = await telemetry.prometheus!.collect();
    const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === "qingyu.agent.time_to_first_token");
    const points = (metric?.dataPoints ?? []) as DataPoint<Histogram>[];
    return points.filter((p) => p.attributes["qingyu.agent"] === agentId).reduce((sum, p) => sum + p.value.count, 0);
  }

  it("is one chat span with the streamed call's attributes and trace headers, no first-token event, and no time-to-first-token sample", async () => {
    exporter.reset();
    const whole = model(() => ({ say: "hello" }));
    await traced(whole, "unary").execute(input({ agentId: "unary" }), callInfo());
    expect(whole.generated).toBe(1);
    const chats = exporter.getFinishedSpans().filter((s) => s.name === "chat m");
    expect(chats).toHaveLength(1);
    const chat = chats[0]!;
    expect(chat.kind).toBe(SpanKind.CLIENT);
    expect(chat.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "model",
      "gen_ai.request.model": "m",
      "gen_ai.response.model": "m-2024",
      "gen_ai.response.finish_reasons": ["stop"],
      "gen_ai.usage.input_tokens": 10,
      "gen_ai.usage.output_tokens": 2,
      "qingyu.attempt": 1,
    });
    expect(chat.events.map((e) => e.name)).not.toContain("gen_ai.first_token");
    expect(whole.requests[0]!.traceHeaders?.traceparent).toBe(`00-${chat.spanContext().traceId}-${chat.spanContext().spanId}-01`);
    expect(await firstTokenCount("unary")).toBe(0);

    // The same call streamed has its first token in both.
    exporter.reset();
    await collect(
      traced(
        model(() => ({ say: "hello" })),
        "streamed",
      ).stream(input({ agentId: "streamed" }), callInfo()),
    );
    const streamedChat = exporter.getFinishedSpans().find((s) => s.name === "chat m")!;
    expect(streamedChat.events.map((e) => e.name)).toContain("gen_ai.first_token");
    expect(await firstTokenCount("streamed")).toBe(1);
  });
});
