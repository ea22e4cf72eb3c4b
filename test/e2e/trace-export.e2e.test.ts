// Spans leave the server from its export worker (a worker_threads thread running
// the OTLP exporter); these check what an operator sees of that: spans at a real
// OTLP/HTTP receiver, those still batched flushed at SIGTERM, and spans the
// worker cannot take dropped with a warning rather than held without bound.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";

/** An OTLP/HTTP receiver for http/json: the names of the spans it was sent, per trace id. */
async function receiver() {
  const spans: { name: string; traceId: string }[] = [];
  let requests = 0;
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      requests++;
      const payload = JSON.parse(body || "{}") as { resourceSpans?: { scopeSpans: { spans: { name: string; traceId: string }[] }[] }[] };
      for (const rs of payload.resourceSpans ?? [])
        for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ name: s.name, traceId: s.traceId.toLowerCase() });
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    requests: () => requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const config = { log: { level: "info" }, plugins: { dirs: [] }, pipeline: ["logging", "validation"] };
const traceparent = (traceId: string) => `00-${traceId}-00f067aa0ba902b7-01`;

async function call(server: ServerProcess, traceId: string): Promise<void> {
  const client = new TestClient(server.grpcPort);
  try {
    await client.unary(AgentService, AgentService.method.execute, { agentId: "echo", task: "traced" }, { metadata: { traceparent: traceparent(traceId) } });
  } finally {
    client.close();
  }
}

describe("span export from the worker thread", () => {
  let rx: Awaited<ReturnType<typeof receiver>> | undefined;
  let server: ServerProcess | undefined;
  afterEach(async () => {
    await server?.stop();
    await rx?.close();
  });

  it("spans still batched when SIGTERM comes are sent before the process exits", async () => {
    rx = await receiver();
    // A batch delay far beyond the test: only the shutdown flush can send these spans. No metrics
    // exporter: its last export at shutdown kept the process up long enough to hide a worker that
    // was not waited for.
    server = await startServer(config, {
      OTEL_METRICS_EXPORTER: "none",
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_ENDPOINT: rx.url,
      OTEL_BSP_SCHEDULE_DELAY: "600000",
    });
    const traceId = "5bf92f3577b34da6a3ce929d0e0e4736";
    await call(server, traceId);
    await new Promise((r) => setTimeout(r, 300));
    expect(rx.spans.filter((s) => s.traceId === traceId)).toEqual([]);
    expect(await server.stop()).toBe(0);
    const names = rx.spans.filter((s) => s.traceId === traceId).map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(["qingyu.agent.v1.AgentService/Execute", "middleware logging", "middleware validation", "chat echo-1"]));
  });

  it("spans beyond OTEL_BSP_MAX_QUEUE_SIZE are dropped and the drop is logged", async () => {
    rx = await receiver();
    server = await startServer(config, {
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_ENDPOINT: rx.url,
      OTEL_BSP_MAX_QUEUE_SIZE: "1",
    });
    // One call ends four spans at once; a queue of one takes the first and drops the rest.
    await call(server, "6bf92f3577b34da6a3ce929d0e0e4736");
    let warning: { dropped?: number } | undefined;
    for (let i = 0; i < 100 && !warning; i++) {
      warning = server.lines.map((l) => JSON.parse(l) as { msg?: string; dropped?: number }).find((l) => l.msg?.startsWith("spans dropped"));
      if (!warning) await new Promise((r) => setTimeout(r, 20));
    }
    expect(warning?.dropped).toBeGreaterThan(0);
    expect(await server.stop()).toBe(0);
  });
});
