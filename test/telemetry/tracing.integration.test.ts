// The span tree of real calls: the whole server in this process (so an
// in-memory exporter can see its spans), called by a real grpc-js client.
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { App } from "../../src/app.ts";
import { ConfigSchema } from "../../src/config/schema.ts";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { Telemetry } from "../../src/telemetry/setup.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { tempDir } from "../support/temp-dirs.ts";

const A = AgentService.method;
const exporter = new InMemorySpanExporter();
let telemetry: Telemetry;
let app: App;
let client: TestClient;
let fake: FakeOpenAI;

// A user's middleware with no tracing code of its own.
const pluginDir = tempDir("qingyu-trace-");
writeFileSync(
  join(pluginDir, "stamp.ts"),
  `import { definePlugin } from ${JSON.stringify(pathToFileURL(resolve(import.meta.dirname, "../../src/index.ts")).href)};
export default definePlugin({ name: "stamp", kind: "middleware", setup: () => ({ name: "stamp", process: (ctx, next) => next() }) });
`,
);
// A user's middleware that starts its own span after awaiting a timer and after its first item:
// the ambient context must still be its stage.
writeFileSync(
  join(pluginDir, "deep.ts"),
  `import { definePlugin } from ${JSON.stringify(pathToFileURL(resolve(import.meta.dirname, "../../src/index.ts")).href)};
export default definePlugin({ name: "deep", kind: "middleware", setup: (host) => ({
  name: "deep",
  async *process(ctx, next) {
    await new Promise((r) => setTimeout(r, 1));
    host.tracer.startActiveSpan("deep before", (span) => span.end());
    let first = true;
    for await (const event of next()) {
      if (first) {
        first = false;
        await Promise.resolve();
        host.tracer.startSpan("deep during").end();
      }
      yield event;
    }
  },
}) });
`,
);

beforeAll(async () => {
  fake = await startFakeOpenAI();
  telemetry = await Telemetry.start({ env: {}, prometheus: false, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const config = ConfigSchema.parse({
    server: { host: "127.0.0.1", port: 0, httpPort: null },
    log: { level: "silent" },
    pipeline: ["logging", "stamp", "deep", "validation"],
    providers: { echo: { plugin: "echo" }, llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "k" } } },
    agents: [
      { id: "echo", provider: "echo", model: "echo-1" },
      { id: "gpt", provider: "llm", model: "fake-model" },
    ],
    eventHandlers: ["alerting"],
    plugins: { dirs: [pluginDir] },
    executor: { retry: { maxAttempts: 1 } },
  });
  app = await App.create({ config, baseDir: pluginDir, env: {}, log: pino({ level: "silent" }), telemetry });
  client = new TestClient((await app.start()).grpcPort);
});

afterAll(async () => {
  client?.close();
  await app?.shutdown();
  await telemetry?.shutdown();
  await fake?.close();
});

let n = 0;
/** A trace context as a caller would send it, unique per test. */
function caller() {
  const traceId = (++n).toString(16).padStart(32, "a");
  const spanId = "b7ad6b7169203331";
  return { traceId, spanId, metadata: { traceparent: `00-${traceId}-${spanId}-01` } };
}

async function spansOf(traceId: string, atLeast: string[]): Promise<ReadableSpan[]> {
  // Spans end as the response goes out; the last may land just after the client has it.
  for (let i = 0; i < 100; i++) {
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    if (atLeast.every((name) => spans.some((s) => s.name === name))) return spans;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`spans ${atLeast.join(", ")} not all recorded`);
}

const named = (spans: ReadableSpan[], name: string) => {
  const span = spans.find((s) => s.name === name);
  if (!span) throw new Error(`no span "${name}" among ${spans.map((s) => s.name).join(", ")}`);
  return span;
};
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe("tracing the span tree of a call", () => {
  it("Execute: the server span continues the caller's trace; each middleware, then the provider call, nests inside", async () => {
    const { traceId, spanId, metadata } = caller();
    await client.unary(AgentService, A.execute, { agentId: "echo", task: "hello there" }, { metadata });
    const spans = await spansOf(traceId, ["qingyu.agent.v1.AgentService/Execute", "chat echo-1"]);
    const server = named(spans, "qingyu.agent.v1.AgentService/Execute");
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(parentOf(server)).toBe(spanId);
    expect(server.attributes).toMatchObject({
      "rpc.system": "grpc",
      "rpc.service": "qingyu.agent.v1.AgentService",
      "rpc.method": "Execute",
      "rpc.grpc.status_code": 0,
    });
    const logging = named(spans, "middleware logging");
    const stamp = named(spans, "middleware stamp");
    const validation = named(spans, "middleware validation");
    expect(parentOf(logging)).toBe(server.spanContext().spanId);
    expect(parentOf(stamp)).toBe(logging.spanContext().spanId);
    const deep = named(spans, "middleware deep");
    expect(parentOf(deep)).toBe(stamp.spanContext().spanId);
    expect(parentOf(validation)).toBe(deep.spanContext().spanId);
    // A plugin's own spans, started after awaits inside process(), nest under its stage.
    expect(parentOf(named(spans, "deep before"))).toBe(deep.spanContext().spanId);
    expect(parentOf(named(spans, "deep during"))).toBe(deep.spanContext().spanId);
    const chat = named(spans, "chat echo-1");
    expect(chat.kind).toBe(SpanKind.CLIENT);
    const agentSpan = named(spans, "invoke_agent echo");
    expect(parentOf(agentSpan)).toBe(validation.spanContext().spanId);
    expect(parentOf(chat)).toBe(agentSpan.spanContext().spanId);
    expect(chat.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "echo",
      "gen_ai.request.model": "echo-1",
      "gen_ai.usage.input_tokens": 2,
      "gen_ai.usage.output_tokens": 3,
      "gen_ai.response.finish_reasons": ["stop"],
    });
    expect(chat.events.map((e) => e.name)).toContain("gen_ai.first_token");
    for (const span of spans) expect(span.ended).toBe(true);
  });

  it("ExecuteStream: the same tree, and session-store operations as children of the stage that made them", async () => {
    const { session } = await client.unary(SessionService, SessionService.method.createSession, { userId: "u", agentId: "echo" });
    const { traceId, metadata } = caller();
    await client.collect(client.stream(AgentService, A.executeStream, { sessionId: session!.sessionId, task: "stream it" }, { metadata }));
    const spans = await spansOf(traceId, ["qingyu.agent.v1.AgentService/ExecuteStream", "chat echo-1", "session_store append_messages"]);
    const server = named(spans, "qingyu.agent.v1.AgentService/ExecuteStream");
    expect(parentOf(named(spans, "middleware logging"))).toBe(server.spanContext().spanId);
    const get = named(spans, "session_store get");
    expect(get.attributes).toMatchObject({ "db.system.name": "memory", "db.operation.name": "get", "qingyu.session_id": session!.sessionId });
    expect(spans.map((s) => s.spanContext().spanId)).toContain(parentOf(get));
    expect(parentOf(named(spans, "session_store append_messages"))).toBe(server.spanContext().spanId);
  });

  it("a failed call marks its spans with error status and the exception; an event handler's span links to it", async () => {
    const { traceId, metadata } = caller();
    const { code } = await statusOf(client.unary(AgentService, A.execute, { agentId: "nobody", task: "x" }, { metadata }));
    expect(code).toBe(5);
    const spans = await spansOf(traceId, ["qingyu.agent.v1.AgentService/Execute", "middleware validation"]);
    const server = named(spans, "qingyu.agent.v1.AgentService/Execute");
    expect(server.status.code).toBe(SpanStatusCode.ERROR);
    expect(server.attributes["rpc.grpc.status_code"]).toBe(5);
    expect(server.events.some((e) => e.name === "exception")).toBe(true);
    expect(named(spans, "middleware validation").status.code).toBe(SpanStatusCode.ERROR);
    let handler: ReadableSpan | undefined;
    for (let i = 0; i < 100 && !handler; i++) {
      handler = exporter.getFinishedSpans().find((s) => s.name === "event_handler alerting" && s.links.some((l) => l.context.traceId === traceId));
      if (!handler) await new Promise((r) => setTimeout(r, 10));
    }
    expect(handler).toBeDefined();
    expect(handler!.attributes).toMatchObject({ "qingyu.event.type": "ERROR_OCCURRED" });
    expect(handler!.spanContext().traceId).not.toBe(traceId); // linked, not a child: the call did not wait for it
  });

  it("the provider's outgoing HTTP request carries traceparent of the same trace, naming the provider span", async () => {
    fake.enqueue({ kind: "stream", chunks: ["Hi", " there"], usage: { prompt_tokens: 4, completion_tokens: 2 } });
    const { traceId, metadata } = caller();
    await client.unary(AgentService, A.execute, { agentId: "gpt", task: "greet" }, { metadata });
    const spans = await spansOf(traceId, ["chat fake-model"]);
    const chat = named(spans, "chat fake-model");
    const sent = String(fake.requests.at(-1)!.headers.traceparent);
    expect(sent).toBe(`00-${traceId}-${chat.spanContext().spanId}-01`);
    expect(chat.attributes).toMatchObject({ "gen_ai.provider.name": "llm", "gen_ai.usage.input_tokens": 4, "gen_ai.usage.output_tokens": 2 });
  });
});
