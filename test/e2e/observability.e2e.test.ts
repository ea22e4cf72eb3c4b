import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;

/** A local OTLP/HTTP (JSON) receiver: every span it is sent, with its trace id. */
async function otlpReceiver() {
  const spans: { name: string; traceId: string; parentSpanId?: string; attributes: Record<string, unknown> }[] = [];
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        const payload = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: any[] }[] }[] };
        for (const rs of payload.resourceSpans ?? []) {
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              const attributes = Object.fromEntries((s.attributes ?? []).map((a: any) => [a.key, Object.values(a.value ?? {})[0]]));
              spans.push({ name: s.name, traceId: s.traceId, parentSpanId: s.parentSpanId, attributes });
            }
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe("spans exported over OTLP/HTTP to a collector", () => {
  let receiver: Awaited<ReturnType<typeof otlpReceiver>>;
  let server: ServerProcess;
  beforeAll(async () => {
    receiver = await otlpReceiver();
    server = await startServer(
      { log: { level: "warn" }, plugins: { dirs: [] } },
      {
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: "50",
        OTEL_SERVICE_NAME: "qingyu-e2e",
      },
    );
  });
  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
  });

  it("receives the server span of a real call, continuing the caller's traceparent", async () => {
    const client = new TestClient(server.grpcPort);
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    try {
      await client.unary(AgentService, A.execute, { agentId: "echo", task: "traced" }, { metadata: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    } finally {
      client.close();
    }
    let mine: typeof receiver.spans = [];
    for (let i = 0; i < 100 && !mine.some((s) => s.name.endsWith("/Execute")); i++) {
      await new Promise((r) => setTimeout(r, 50));
      mine = receiver.spans.filter((s) => s.traceId.toLowerCase() === traceId);
    }
    const rpc = mine.find((s) => s.name === "qingyu.agent.v1.AgentService/Execute");
    expect(rpc).toBeDefined();
    expect(rpc!.parentSpanId?.toLowerCase()).toBe("00f067aa0ba902b7");
    expect(rpc!.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.method": "Execute" });
    expect(mine.map((s) => s.name)).toEqual(expect.arrayContaining(["middleware logging", "middleware validation", "chat echo-1"]));
  });
});

describe("Prometheus metrics on the admin port", () => {
  let server: ServerProcess;
  let metricsPort: number;
  beforeAll(async () => {
    server = await startServer({
      log: { level: "warn" },
      server: { metricsPort: 0 },
      pipeline: ["logging", { plugin: "rate-limit", options: { perPrincipal: { requestsPerMinute: 3 } } }, "validation", "cache"],
      providers: { echo: { plugin: "echo", options: { tokenDelayMs: 5 } } },
      plugins: { dirs: [] },
    });
    const listening = server.lines.map((l) => JSON.parse(l)).find((e) => e.msg === "listening");
    metricsPort = listening.metricsPort;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("shows RPC durations by method and code, tokens, first-token times, streams, cache and rate-limit counts", async () => {
    const client = new TestClient(server.grpcPort);
    try {
      await client.unary(AgentService, A.execute, { agentId: "echo", userId: "a", task: "one two three" });
      await client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", userId: "a", task: "one two three" }));
      expect((await statusOf(client.unary(AgentService, A.execute, { agentId: "nobody", userId: "b", task: "x" }))).code).toBe(5);
      await client.unary(AgentService, A.execute, { agentId: "echo", userId: "a", task: "four" });
      expect((await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", userId: "a", task: "five" }))).code).toBe(8);
    } finally {
      client.close();
    }
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const value = (pattern: RegExp) => {
      const line = text.split("\n").find((l) => pattern.test(l));
      return line ? Number(line.trim().split(" ").at(-1)) : undefined;
    };
    expect(value(/^rpc_server_duration_count\{.*rpc_method="Execute".*rpc_grpc_status_code="0"/)).toBe(2);
    expect(value(/^rpc_server_duration_count\{.*rpc_method="Execute".*rpc_grpc_status_code="5"/)).toBe(1);
    expect(value(/^rpc_server_duration_count\{.*rpc_method="Execute".*rpc_grpc_status_code="8"/)).toBe(1);
    expect(value(/^rpc_server_duration_count\{.*rpc_method="ExecuteStream".*rpc_grpc_status_code="0"/)).toBe(1);
    expect(value(/^qingyu_rpc_active_streams\{.*rpc_method="ExecuteStream"/)).toBe(0);
    // The cached second call ran no model: output tokens are echo's words of "[history=0] one two three" (4)
    // and "[history=0] four" (2), once each.
    expect(
      value(
        /^qingyu_agent_tokens(_total)?\{.*gen_ai_token_type="output".*qingyu_agent="echo"|^qingyu_agent_tokens(_total)?\{.*qingyu_agent="echo".*gen_ai_token_type="output"/,
      ),
    ).toBe(6);
    expect(value(/^qingyu_agent_time_to_first_token(_seconds)?_count\{.*qingyu_agent="echo"/)).toBe(2);
    expect(value(/^qingyu_cache_requests(_total)?\{.*qingyu_cache_result="hit"/)).toBe(1);
    expect(value(/^qingyu_cache_requests(_total)?\{.*qingyu_cache_result="miss"/)).toBe(2);
    expect(value(/^qingyu_rate_limit_refused(_total)?\{.*qingyu_rate_limit_scope="principal"/)).toBe(1);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status).toBe(404);
  });
});
