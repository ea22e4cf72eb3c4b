// `npm run bench:workers`: issue #18's "every core" row. The same server (default pipeline, the
// echo agent, sessions and events in Redis as more than one worker needs) with server.workers 1
// and 2, driven by h2load with unary Execute over 8 connections of 8 streams each (the
// supervisor hands out connections, not calls, so one connection would reach one worker),
// rounds interleaved. Reports req/s and the ratio, and where the machine's CPU went: the
// server's processes (the supervisor and its workers, from /proc) and h2load's own, since the
// load generator shares the cores with the server. Needs Redis (REDIS_URL, default
// redis://127.0.0.1:6379; keys under a prefix of its own) and h2load (apt-get install nghttp2-client).
import { create, toBinary } from "@bufbuild/protobuf";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { ExecuteRequestSchema } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { installCleanup, startOurs, stopAll, tempDir, type ServerChild } from "./children.ts";
import { EXECUTE } from "./grpc-client.ts";
import { writeGrpcFrame } from "./h2load.ts";
import { h2loadCell } from "./openai-real-h2load.ts";
import { median } from "./report.ts";
import { oursConfig } from "./servers.ts";

const ROUNDS = Number(process.env.BENCH_WORKERS_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_WORKERS_SECONDS ?? 5);
const CONNECTIONS = 8;
const STREAMS = 8;

/** The server's pid and its workers' (children of the supervisor). */
function serverPids(pid: number): number[] {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // No /proc children file: the supervisor alone.
  }
  return [pid, ...children];
}

interface Round {
  reqPerSec: number;
  serverCores: number;
  loadCores: number;
}

/** One h2load run (bench/openai-real-h2load.ts), and the cores the server's processes and h2load itself used meanwhile. */
async function drive(server: ServerChild, bodyFile: string): Promise<Round> {
  const pids = Object.fromEntries(serverPids(server.pid).map((pid) => [String(pid), pid]));
  const headers = ["content-type: application/grpc", "te: trailers"];
  const url = `http://127.0.0.1:${server.port}${EXECUTE}`;
  const cell = await h2loadCell({
    name: server.name,
    url,
    h1: false,
    headers,
    bodyFile,
    inFlight: CONNECTIONS * STREAMS,
    connections: CONNECTIONS,
    seconds: SECONDS,
    warmupSeconds: 1,
    pids,
  });
  if (cell.errors) throw new Error(`${server.name}: ${cell.firstError}`);
  const serverMicros = Object.entries(cell.cpuMicros).reduce((sum, [name, us]) => sum + (name === "client" ? 0 : us), 0);
  return { reqPerSec: cell.reqPerSec, serverCores: serverMicros / cell.windowMicros, loadCores: cell.cpuMicros.client! / cell.windowMicros };
}

async function main(): Promise<void> {
  installCleanup();
  const redis = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const config = (workers: number) => ({
    ...oursConfig(),
    server: { host: "127.0.0.1", shutdownGraceMs: 1000, workers },
    log: { level: "warn" },
    redis: { url: redis },
    sessions: { store: "redis", redisKeyPrefix: `qingyu:bench-workers:${randomUUID()}:` },
    events: { bus: "redis" },
  });
  const bodyFile = join(tempDir(), "execute.bin");
  writeGrpcFrame(bodyFile, toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "echo", task: "hello from the workers bench" })));
  const servers = { one: await startOurs("one worker", config(1)), two: await startOurs("two workers", config(2)) };
  // The supervisor's port answers before every worker serves: give the second its start.
  await new Promise((r) => setTimeout(r, 3000));
  const runs: Record<"one" | "two", Round[]> = { one: [], two: [] };
  try {
    for (let round = 0; round < ROUNDS; round++)
      for (const which of round % 2 ? (["two", "one"] as const) : (["one", "two"] as const)) runs[which].push(await drive(servers[which], bodyFile));
  } finally {
    await stopAll();
  }
  const m = (which: "one" | "two", key: keyof Round) => median(runs[which].map((r) => r[key]));
  const ratio = m("two", "reqPerSec") / m("one", "reqPerSec");
  console.log(
    `unary Execute, h2load ${CONNECTIONS} connections × ${STREAMS} streams, ${SECONDS} s × ${ROUNDS} rounds each, interleaved; ${cpus().length} cpus`,
  );
  console.log("| | req/s (median) | server processes, cores | h2load, cores |\n|---|---|---|---|");
  for (const which of ["one", "two"] as const)
    console.log(
      `| ${which === "one" ? "1 worker" : "2 workers"} | ${m(which, "reqPerSec").toFixed(0)} | ${m(which, "serverCores").toFixed(2)} | ${m(which, "loadCores").toFixed(2)} |`,
    );
  console.log(`\n2 workers / 1 worker: ${ratio.toFixed(2)}× (target ≥ 1.6×: ${ratio >= 1.6 ? "met" : "NOT met"})`);
  // The load generator and Redis take their share of the same cores: per core the servers got, the scaling itself.
  const perCore = (which: "one" | "two") => m(which, "reqPerSec") / m(which, "serverCores");
  console.log(
    `req/s per core the server processes used: ${perCore("one").toFixed(0)} (1 worker), ${perCore("two").toFixed(0)} (2 workers): ${(perCore("two") / perCore("one")).toFixed(2)}×; ` +
      `the rest of the ${cpus().length} cores went to h2load (counted above) and Redis`,
  );
  console.log(
    `load average at end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
}

await main();
