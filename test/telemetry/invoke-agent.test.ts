// The invoke_agent span around a tool run, and the step and tool metrics it records, read from
// an in-memory span exporter and the Prometheus reader's own collect() (no HTTP server).
import { type LlmProvider, type RunEvent, type Tool, Code, ProviderError } from "@qingyu/plugin-api";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import type { DataPoint, Histogram, ResourceMetrics } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AgentRegistry } from "../../src/agents/registry.ts";
import { agentCall } from "../../src/executor/agent-call.ts";
import { createContext } from "../../src/executor/context.ts";
import { Executor } from "../../src/executor/executor.ts";
import { OutputSchemas } from "../../src/executor/structured-output.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { withInvokeAgentSpan } from "../../src/telemetry/invoke-agent.ts";
import { Telemetry } from "../../src/telemetry/setup.ts";
import { ToolCatalog } from "../../src/tools/catalog.ts";
import { adder, addThenAnswer, callInfo, collect, failing, helperAgent, input, scriptedModel, toolExecutor } from "../plugins/builtin/tool-run.ts";

const exporter = new InMemorySpanExporter();
const log = pino({ level: "silent" });
let telemetry: Telemetry;

beforeAll(async () => {
  telemetry = await Telemetry.start({ env: {}, prometheus: true, spanProcessors: [new SimpleSpanProcessor(exporter)] });
});

afterAll(async () => {
  await telemetry?.shutdown();
});

const stores: SessionStore[] = [];
afterEach(async () => {
  exporter.reset();
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

/** One run of agent "helper" through the step loop wrapped as the executor is to wrap it. */
async function tracedRun(model: LlmProvider, tools: Tool[], inSession = false): Promise<{ events: RunEvent[]; sessionId: string }> {
  const { sessions, store } = toolExecutor(model, tools);
  stores.push(store);
  const terminal = withInvokeAgentSpan(
    telemetry,
    agentCall({
      providers: new Map([["model", model]]),
      policy: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
      log,
      telemetry,
      tools: new ToolCatalog(tools.map((tool) => ({ tool, source: "test" }))),
      outputSchemas: new OutputSchemas(),
      middleware: [],
      toolLimits: { maxOutputBytes: 4096, abandonAfterMs: 200 },
    }),
  );
  const sessionId = inSession ? (await sessions.create("alice", "helper", {}, 600)).id : "";
  const ctx = await createContext(input({ sessionId }), callInfo(), new AgentRegistry([helperAgent()]), sessions);
  return { events: await collect(terminal(ctx)), sessionId };
}

const named = (spans: ReadableSpan[], prefix: string) => spans.filter((s) => s.name.startsWith(prefix));
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe("the invoke_agent span", () => {
  it("is the parent of each step's chat span and each tool call's execute_tool span, with the run's totals", async () => {
    const { sessionId } = await tracedRun(scriptedModel(addThenAnswer), [adder()], true);
    const spans = exporter.getFinishedSpans();
    const [agent] = named(spans, "invoke_agent");
    expect(named(spans, "invoke_agent")).toHaveLength(1);
    expect(agent!.name).toBe("invoke_agent helper");
    expect(agent!.kind).toBe(SpanKind.INTERNAL);
    expect(agent!.attributes).toMatchObject({
      "gen_ai.operation.name": "invoke_agent",
      "gen_ai.agent.id": "helper",
      "gen_ai.agent.name": "helper",
      "gen_ai.provider.name": "model",
      "gen_ai.request.model": "m",
      "gen_ai.response.finish_reasons": ["stop"],
      "gen_ai.usage.input_tokens": 20,
      "gen_ai.usage.output_tokens": 4,
      "qingyu.agent.steps": 2,
      "qingyu.agent.tool_calls": 1,
    });
    expect(agent!.attributes["gen_ai.conversation.id"]).toBe(sessionId);

    const id = agent!.spanContext().spanId;
    const chats = named(spans, "chat ");
    const tools = named(spans, "execute_tool");
    expect(chats.map(parentOf)).toEqual([id, id]);
    expect(tools.map(parentOf)).toEqual([id]);
    expect(tools[0]!.attributes).toMatchObject({ "gen_ai.tool.name": "add", "gen_ai.tool.call.id": "c1_0" });
    // In the order they ran: step 1's model call, its tool, step 2's model call.
    const order = [chats[0]!, tools[0]!, chats[1]!].map((s) => s.startTime[0] * 1e9 + s.startTime[1]);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    for (const span of spans) expect(span.spanContext().traceId).toBe(agent!.spanContext().traceId);
  });

  it("marks a run that fails with error status", async () => {
    const model = scriptedModel((n) =>
      n === 1 ? { calls: [["add", '{"a":1,"b":2}']] } : { fail: new ProviderError("upstream refused", Code.InvalidArgument, false) },
    );
    await expect(tracedRun(model, [adder()])).rejects.toThrow("upstream refused");
    const [agent] = named(exporter.getFinishedSpans(), "invoke_agent");
    expect(agent!.status.code).toBe(SpanStatusCode.ERROR);
    expect(agent!.events.map((e) => e.name)).toContain("exception");
  });

  it("is not made when tracing is off", async () => {
    const disabled = Telemetry.disabled();
    const terminal = async function* (): AsyncIterable<RunEvent> {};
    expect(withInvokeAgentSpan(disabled, terminal)).toBe(terminal);
    expect(withInvokeAgentSpan(undefined, terminal)).toBe(terminal);
  });
});

/** The data points of one metric in a collection. */
function points<T>(collected: ResourceMetrics, name: string): DataPoint<T>[] {
  const metric = collected.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  return (metric?.dataPoints ?? []) as DataPoint<T>[];
}

describe("tool-run metrics", () => {
  it("count the steps by finish reason and time each tool call by tool and outcome", async () => {
    const model = scriptedModel((n) =>
      n === 1
        ? {
            calls: [
              ["sum", '{"a":1,"b":2}'],
              ["fails", "{}"],
            ],
          }
        : { say: "3" },
    );
    const built = toolExecutor(model, []);
    stores.push(built.store);
    // Tool names of their own: the reader's totals include the other tests' calls.
    const tools = [adder({ name: "sum" }), failing()];
    const executor = new Executor({
      agents: new AgentRegistry([helperAgent({ id: "metered" })]),
      providers: new Map([["model", model]]),
      middleware: [],
      sessions: built.sessions,
      events: built.events,
      retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
      log,
      telemetry,
      tools: new ToolCatalog(tools.map((tool) => ({ tool, source: "test" }))),
    });
    await executor.execute(input({ agentId: "metered" }), callInfo());

    const { resourceMetrics, errors } = await telemetry.prometheus!.collect();
    expect(errors).toEqual([]);
    const steps = points<number>(resourceMetrics, "qingyu.agent.steps").filter((p) => p.attributes["qingyu.agent"] === "metered");
    expect(steps.map((p) => [p.attributes["gen_ai.response.finish_reason"], p.value]).sort()).toEqual([
      ["stop", 1],
      ["tool_calls", 1],
    ]);
    const durations = points<Histogram>(resourceMetrics, "gen_ai.tool.duration");
    const count = (tool: string, outcome: string) =>
      durations.find((p) => p.attributes["gen_ai.tool.name"] === tool && p.attributes["qingyu.tool.outcome"] === outcome)?.value.count;
    expect(count("sum", "ok")).toBe(1);
    expect(count("fails", "error")).toBe(1);
  });
});
