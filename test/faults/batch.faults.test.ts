// Hostile batch callers (issue #13, items 7-9): an unauthenticated 100-item ExecuteBatch,
// a flood of batches from ten clients on the zero-delay echo provider, and a caller asking
// for a model its agent does not list. Each is refused with one status for the whole call,
// the log stays bounded, and health keeps answering while batches run.
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { createHash } from "node:crypto";
import http2 from "node:http2";
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, ExecuteBatchRequestSchema } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { logged, projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { killAll, startServer, type ServerProcess } from "../support/server-process.ts";
import { connectCall, crashLines, expectServing, grpcFrame, rawGrpc } from "./support.ts";

const KEY = "batch-faults-key";
const AUTH = { authorization: `Bearer ${KEY}` };
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const items = (n: number, agentId = "echo") => Array.from({ length: n }, (_, i) => ({ agentId, task: `item ${i}` }));
const FLOOD_MS = 5000;
const PER_CONNECTION = 10;
const alertLines = (server: ServerProcess) => server.lines.filter((l) => l.includes('"alert":"agent call failed"'));

afterAll(() => {
  killAll();
  removeProjectDirs();
});

describe("ExecuteBatch and model choice with auth and alerting on", () => {
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    server = await startServer({
      log: { level: "warn" },
      pipeline: ["logging", { plugin: "auth", options: { apiKeys: [{ id: "alice", sha256: sha256(KEY) }] } }, "validation"],
      eventHandlers: [{ plugin: "alerting", options: { maxPerMinute: 10 } }],
      agents: [
        { id: "echo", provider: "echo", model: "echo-1" },
        { id: "pick", provider: "echo", model: "echo-1", models: ["echo-2"] },
      ],
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    if (!server) return;
    expect(crashLines(server)).toEqual([]);
    expect(await server.stop(), server.stderr()).toBe(0);
  });

  it("refuses an unauthenticated 100-item batch as a whole, running no item and logging no alert", async () => {
    const rpc = await statusOf(client.unary(AgentService, AgentService.method.executeBatch, { requests: items(100) }, { timeoutMs: 10_000 }));
    expect(grpc.status[rpc.code], rpc.details).toBe("UNAUTHENTICATED");
    const http = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/ExecuteBatch", JSON.stringify({ requests: items(100) }));
    expect([http.status, http.json?.code]).toEqual([401, "unauthenticated"]);
    await new Promise((r) => setTimeout(r, 200)); // event handlers run after the answer
    expect(alertLines(server)).toEqual([]);
    await expectServing(server, "echo", AUTH.authorization);
  });

  it("logs at most maxPerMinute alert lines for a batch of 100 failing items", async () => {
    const res = await client.unary(
      AgentService,
      AgentService.method.executeBatch,
      { requests: items(100, "no-such-agent") },
      { metadata: AUTH, timeoutMs: 10_000 },
    );
    expect(res.items.map((i) => i.outcome.case)).toEqual(Array(100).fill("error"));
    await new Promise((r) => setTimeout(r, 200));
    expect(alertLines(server).length).toBe(10);
  });

  it("refuses a model the agent does not list with PERMISSION_DENIED on both ports, and serves a listed one", async () => {
    const ask = (agentId: string, model: string) => ({ agentId, task: "hi", options: { model } });
    const rpc = await statusOf(client.unary(AgentService, AgentService.method.execute, ask("echo", "o1-pro"), { metadata: AUTH, timeoutMs: 10_000 }));
    expect(grpc.status[rpc.code], rpc.details).toBe("PERMISSION_DENIED");
    expect(rpc.details).toContain('"o1-pro"');
    expect(rpc.details).toContain("echo");
    const http = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", JSON.stringify(ask("pick", "other-org:ft-model")), AUTH);
    expect([http.status, http.json?.code]).toEqual([403, "permission_denied"]);
    const batch = await client.unary(
      AgentService,
      AgentService.method.executeBatch,
      { requests: [ask("pick", "o1-pro"), ask("pick", "echo-2")] },
      { metadata: AUTH, timeoutMs: 10_000 },
    );
    expect(batch.items[0]!.outcome.case === "error" && grpc.status[batch.items[0]!.outcome.value.code]).toBe("PERMISSION_DENIED");
    expect(batch.items[1]!.outcome.case === "result" && batch.items[1]!.outcome.value.model).toBe("echo-2");
  });
});

describe("a flood of batches from ten clients on the zero-delay echo provider", () => {
  let server: ServerProcess;

  beforeAll(async () => {
    // Default executor.batch limits: 64 items in flight, 512 queued behind them.
    server = await startServer({ log: { level: "info" }, agents: [{ id: "echo", provider: "echo", model: "echo-1" }], plugins: { dirs: [] } });
  });
  afterAll(async () => {
    if (!server) return;
    expect(crashLines(server)).toEqual([]);
    expect(await server.stop(), server.stderr()).toBe(0);
  });

  it("keeps health answered and refuses the batches over the cap with RESOURCE_EXHAUSTED", async () => {
    // Cheap clients, so the server is what is measured: the request is encoded once, sent over
    // raw HTTP/2, and only the status of each answer is read.
    const sessions = Array.from({ length: 10 }, () => http2.connect(`http://127.0.0.1:${server.grpcPort}`));
    const body = grpcFrame(toBinary(ExecuteBatchRequestSchema, create(ExecuteBatchRequestSchema, { requests: items(100), maxConcurrency: 16 })));
    // The probe runs on a thread of its own: on the flood's thread its latency would be the
    // test's own event loop, not the server's.
    const probe = healthProbe(server.grpcPort);
    try {
      await probe.ready;
      const codes: string[] = [];
      // Each of ten connections keeps PER_CONNECTION 100-item batches in flight for FLOOD_MS, asking the most concurrency allowed.
      const until = Date.now() + FLOOD_MS;
      await Promise.all(
        sessions
          .flatMap((session) => Array.from({ length: PER_CONNECTION }, () => session))
          .map(async (session) => {
            while (Date.now() < until) {
              const reply = await rawGrpc(server.grpcPort, "/qingyu.agent.v1.AgentService/ExecuteBatch", body, {}, session, 120_000);
              const code = reply.grpcStatus === undefined ? `no status: ${reply.error}` : grpc.status[reply.grpcStatus]!;
              codes.push(code);
              if (code === "RESOURCE_EXHAUSTED") expect(reply.grpcMessage).toContain("retry in");
            }
          }),
      );
      const latencies = await probe.stop();
      const sorted = [...latencies].sort((a, b) => a - b);
      const p50 = sorted[Math.floor(sorted.length / 2)]!;
      const max = sorted.at(-1)!;
      console.log(
        `health during the flood: ${latencies.length} checks, p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms; batches: ${JSON.stringify(tally(codes))}`,
      );
      // Generous: health latency here follows the machine's load more than this server's (p50 13-360 ms,
      // max 200-900 ms after the fix on the shared 2-core VM); the issue saw 43.5 s.
      expect(max).toBeLessThan(2000);
      expect(codes).toContain("RESOURCE_EXHAUSTED");
      expect(codes).toContain("OK");
      expect(codes.filter((c) => c !== "OK" && c !== "RESOURCE_EXHAUSTED")).toEqual([]);
    } finally {
      for (const session of sessions) session.close();
      await probe.terminate();
    }
    await expectServing(server);
  }, 300_000);
});

/**
 * Health checks every 20 ms from a worker thread until stop(), which resolves with each
 * check's latency in ms. Plain grpc-js with the raw bytes: an empty HealthCheckRequest.
 */
function healthProbe(port: number) {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    const grpc = require(workerData.grpc);
    const client = new grpc.Client("127.0.0.1:" + workerData.port, grpc.credentials.createInsecure());
    const check = () => new Promise((resolve, reject) => client.makeUnaryRequest("/grpc.health.v1.Health/Check", (b) => b, (b) => b, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 120000 }, (err) => (err ? reject(err) : resolve())));
    let stopping = false;
    parentPort.on("message", () => (stopping = true));
    (async () => {
      await check();
      parentPort.postMessage({ ready: true });
      const latencies = [];
      while (!stopping) {
        const started = performance.now();
        await check();
        latencies.push(performance.now() - started);
        await new Promise((r) => setTimeout(r, 20));
      }
      client.close();
      parentPort.postMessage({ latencies });
    })();
  `;
  const worker = new Worker(code, { eval: true, workerData: { port, grpc: createRequire(import.meta.url).resolve("@grpc/grpc-js") } });
  const message = (key: "ready" | "latencies") =>
    new Promise<number[]>((resolve, reject) => {
      const onMessage = (m: Record<string, unknown>) => {
        if (!(key in m)) return;
        worker.off("message", onMessage);
        resolve(m[key] as number[]);
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
    });
  const ready = message("ready");
  return {
    ready,
    stop: () => {
      const done = message("latencies");
      worker.postMessage("stop");
      return done;
    },
    terminate: () => worker.terminate(),
  };
}

function tally(codes: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of codes) out[c] = (out[c] ?? 0) + 1;
  return out;
}

describe("a batch whose items hang in code that ignores the signal", () => {
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    const dir = projectDir();
    // Never resolves and ignores ctx.signal; its dispose() logs, so the test sees its generation go.
    writeFiles(dir, {
      "plugins/hangs.ts": `import { definePlugin, type RunEvent } from ${JSON.stringify(publicApi)};
export default definePlugin({
  name: "hangs",
  kind: "middleware",
  setup() {
    return {
      name: "hangs",
      async *process(ctx, next): AsyncIterable<RunEvent> {
        if (ctx.header("x-fault") === "hangs") await new Promise(() => {});
        yield* next();
      },
      dispose() { console.log(JSON.stringify({ msg: "hangs disposed" })); },
    };
  },
});
`,
    });
    server = await startServer({
      log: { level: "warn" },
      pipeline: ["logging", "validation", "hangs"],
      executor: { batch: { maxItems: 4, maxItemsInFlight: 4, maxQueuedItems: 0 } },
      agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
      plugins: { dirs: [`${dir}/plugins`] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    if (!server) return;
    expect(crashLines(server)).toEqual([]);
    await server.stop("SIGKILL");
  });

  it("ends at its deadline, gives its slots back, and lets a reload dispose the old generation at once", async () => {
    const hung = await statusOf(
      client.unary(
        AgentService,
        AgentService.method.executeBatch,
        { requests: items(4), maxConcurrency: 4 },
        { metadata: { "x-fault": "hangs" }, timeoutMs: 300 },
      ),
    );
    expect(grpc.status[hung.code]).toBe("DEADLINE_EXCEEDED");
    // The four stuck items hold no slot now: a batch as large as the whole cap runs.
    const next = await client.unary(AgentService, AgentService.method.executeBatch, { requests: items(4), maxConcurrency: 4 }, { timeoutMs: 10_000 });
    expect(next.items.map((i) => i.outcome.case)).toEqual(Array(4).fill("result"));
    const before = logged(server, "hangs disposed").length;
    server.child.kill("SIGHUP");
    await waitFor("the old generation's dispose", () => (logged(server, "hangs disposed").length > before ? true : undefined), 3000);
    await expectServing(server);
  });
});
