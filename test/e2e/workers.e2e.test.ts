// server.workers through the real `qingyu serve --workers 2` (Node's cluster): both ports shared
// by two worker processes under a supervisor; every worker's metrics on the supervisor's one
// metrics port, labelled by worker; a worker killed with -9 is logged and replaced while the
// other serves; SIGHUP reloads every worker; SIGTERM drains them all and exits 0. A config whose
// stores live in one process's memory is refused, naming the fix. On Deno (no cluster module)
// more than one worker is a config error.
import { randomUUID } from "node:crypto";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { RunService } from "../../src/gen/qingyu/agent/v1/run_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { projectDir, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { runCli, runtime, serveFile, type ServerProcess } from "../support/server-process.ts";
import { redisUrl } from "../support/services.ts";

/** One Connect JSON Execute on a connection of its own (no keep-alive): the supervisor hands each connection to the next worker. */
function execute(port: number, task: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path: "/qingyu.agent.v1.AgentService/Execute", method: "POST", agent: false, headers: { "content-type": "application/json" } },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ agentId: "echo", task }));
  });
}

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve(body));
    })
      .on("error", reject)
      .end();
  });
}

const logged = (server: ServerProcess) =>
  server.lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });

/** Calls Execute this many times over fresh connections; every answer must be the echo's. */
async function executeMany(port: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const { status, body } = await execute(port, `hello ${i}`);
    expect([status, (JSON.parse(body) as { result: { output: string } }).result.output]).toEqual([200, `[history=0] hello ${i}`]);
  }
}

describe.skipIf(runtime === "deno")("server.workers: 2 on Node", () => {
  let dir: string;
  let server: ServerProcess;
  let metricsPort: number;

  beforeAll(async () => {
    dir = projectDir();
    writeFiles(dir, {
      "config.json": JSON.stringify({
        server: { host: "127.0.0.1", metricsPort: 0, workers: 2 },
        log: { level: "info" },
        redis: { url: redisUrl() },
        sessions: { store: "redis", redisKeyPrefix: `qingyu:workers:${randomUUID()}:` },
        events: { bus: "redis" },
      }),
    });
    server = await serveFile(join(dir, "config.json"), ["--port", "0", "--http-port", "0"]);
    metricsPort = logged(server).find((l) => l.msg === "listening")!.metricsPort as number;
  });
  afterAll(async () => {
    await server?.stop("SIGKILL");
    removeProjectDirs();
  });

  const pidsServing = () =>
    new Set(
      logged(server)
        .filter((l) => l.msg === "worker listening" || l.msg === "listening")
        .flatMap((l) => (l.msg === "listening" ? (l.pids as number[]) : [])),
    );

  it("announces one listening line once both workers serve, and every worker answers on the shared ports", async () => {
    const listening = logged(server).filter((l) => l.msg === "listening");
    expect(listening).toHaveLength(1);
    expect(listening[0]).toMatchObject({ workers: 2, grpcPort: server.grpcPort, httpPort: server.httpPort });
    expect(pidsServing().size).toBe(2);
    await executeMany(server.httpPort, 12);
    // Every worker's metrics, on the supervisor's port, each sample labelled with its worker.
    const text = await get(metricsPort, "/metrics");
    const calls = (worker: number) =>
      text
        .split("\n")
        .filter((l) => l.startsWith("rpc_server_duration_count{") && l.includes(`worker="${worker}"`) && l.includes('rpc_method="Execute"'))
        .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
    expect([calls(1) > 0, calls(2) > 0, calls(1) + calls(2)]).toEqual([true, true, 12]);
    // One TYPE line per family, whatever the number of workers.
    const types = text.split("\n").filter((l) => l.startsWith("# TYPE rpc_server_duration "));
    expect(types).toHaveLength(1);
  });

  it("calls spread by connection: grpc-js channels share one connection, so one worker, unless each keeps its own (grpc.use_local_subchannel_pool)", async () => {
    const grpcCalls = async () => {
      const text = await get(metricsPort, "/metrics");
      const byWorker = new Map<string, number>();
      for (const line of text.split("\n")) {
        if (!line.startsWith("rpc_server_duration_count{") || !line.includes('rpc_system="grpc"') || !line.includes('rpc_method="Execute"')) continue;
        const worker = /worker="(\d+)"/.exec(line)![1]!;
        byWorker.set(worker, (byWorker.get(worker) ?? 0) + Number(line.split(" ").at(-1)));
      }
      return byWorker;
    };
    const spread = async (options: Record<string, number>) => {
      const before = await grpcCalls();
      const clients = Array.from({ length: 4 }, () => new TestClient(server.grpcPort, options));
      try {
        for (let i = 0; i < 20; i++) {
          const reply = await clients[i % 4]!.unary(AgentService, AgentService.method.execute, { agentId: "echo", task: `spread ${i}` });
          expect(reply.result?.output).toBe(`[history=0] spread ${i}`);
        }
      } finally {
        for (const c of clients) c.close();
      }
      const after = await grpcCalls();
      return [...after].map(([w, n]) => n - (before.get(w) ?? 0)).filter((n) => n > 0);
    };
    // Four channels to one address share grpc-js's global subchannel pool: one HTTP/2 connection, one worker.
    expect(await spread({})).toEqual([20]);
    // Each with its own connection: the supervisor hands them to the workers in turn.
    const own = await spread({ "grpc.use_local_subchannel_pool": 1 });
    expect([own.length, own.reduce((a, b) => a + b, 0)]).toEqual([2, 20]);
  });

  it("RunService refuses durable runs it could keep only in one worker's memory, naming the fix", async () => {
    const client = new TestClient(server.grpcPort);
    try {
      const call = client.stream(RunService, RunService.method.startRun, { execute: { agentId: "echo", task: "hi", userId: "ann" } });
      const status = await statusOf(client.collect(call));
      expect(status.code).toBe(9);
      expect(status.details).toMatch(/runs in memory; set runs.store: postgres/);
    } finally {
      client.close();
    }
  });

  it("a worker killed with -9 is logged and replaced; the other serves meanwhile", async () => {
    const [victim] = [...pidsServing()];
    process.kill(victim!, "SIGKILL");
    const exited = await waitFor("the supervisor to log the exit", () => logged(server).find((l) => l.msg === "worker exited; starting another"), 20_000);
    expect(exited).toMatchObject({ pid: victim, signal: "SIGKILL" });
    await executeMany(server.httpPort, 4);
    const back = await waitFor("the new worker to serve", () => logged(server).find((l) => l.msg === "worker serving again"), 30_000);
    expect(back.pid).not.toBe(victim);
    expect(back.worker).toBe(exited.worker);
    await executeMany(server.httpPort, 4);
  });

  it("SIGHUP reloads every worker; SIGTERM drains them all and the supervisor exits 0", async () => {
    const generation2 = () =>
      new Set(
        logged(server)
          .filter((l) => l.msg === "reloaded" && l.generation === 2)
          .map((l) => l.worker),
      );
    server.child.kill("SIGHUP");
    await waitFor("both workers to reload", () => (generation2().size === 2 ? true : undefined), 30_000);
    expect([...generation2()].sort()).toEqual([1, 2]);
    await executeMany(server.httpPort, 2);
    expect(await server.stop("SIGTERM")).toBe(0);
    const stopped = logged(server).filter((l) => l.msg === "stopped");
    // Each worker's own "stopped", then the supervisor's.
    expect(
      stopped
        .filter((l) => l.worker !== undefined)
        .map((l) => l.worker as number)
        .sort(),
    ).toEqual([1, 2]);
    expect(stopped.at(-1)).toMatchObject({ status: 0 });
  });
});

describe("server.workers refused where it cannot work", () => {
  afterAll(() => removeProjectDirs());

  it("more than one worker with stores in one process's memory: exit 2, naming each store and the fix", async () => {
    const dir = projectDir();
    writeFiles(dir, { "config.json": JSON.stringify({ server: { host: "127.0.0.1" }, runs: { store: "memory" } }) });
    const { code, stderr } = await runCli(["serve", "--config", join(dir, "config.json"), "--workers", "2", "--port", "0", "--http-port", "0"]);
    expect(code).toBe(2);
    expect(stderr).toContain("sessions.store: memory keeps sessions in each worker's own memory with server.workers: 2: set redis, postgres or redis+postgres");
    expect(stderr).toContain("events.bus: memory gives each worker's subscribers only that worker's events with server.workers: 2: set events.bus: redis");
    expect(stderr).toContain("runs.store: memory keeps durable runs in each worker's own memory with server.workers: 2: set runs.store: postgres");
  });

  it("--workers takes a count or auto, nothing else", async () => {
    const { code, stderr } = await runCli(["serve", "--workers", "many"]);
    expect(code).toBe(2);
    expect(stderr).toContain('--workers: expected a count 1-256 or auto, got "many"');
  });

  it.runIf(runtime === "deno")("on Deno, more than one worker is a config error: Deno has no cluster module", async () => {
    const dir = projectDir();
    writeFiles(dir, {
      "config.json": JSON.stringify({
        server: { host: "127.0.0.1", workers: 2 },
        redis: { url: redisUrl() },
        sessions: { store: "redis" },
        events: { bus: "redis" },
      }),
    });
    const { code, stderr } = await runCli(["serve", "--config", join(dir, "config.json"), "--port", "0", "--http-port", "0"]);
    expect(code).toBe(2);
    expect(stderr).toContain("server.workers: 2 needs Node's cluster module, which deno does not have");
  });
});
