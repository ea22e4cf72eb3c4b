// `npm run bench:workers`: issue #18's "every core" row. The same server (default pipeline, the
// echo agent, sessions and events in Redis as more than one worker needs) with server.workers 1
// and 2, driven by h2load with unary Execute over 8 connections of 8 streams each (the
// supervisor hands out connections, not calls, so one connection would reach one worker),
// rounds interleaved. Reports req/s and the ratio, and where the machine's CPU went: the
// server's processes (the supervisor and its workers, from /proc) and h2load's own, since the
// load generator shares the cores with the server. Needs Redis (REDIS_URL, default
// redis://127.0.0.1:6379; keys under a prefix of its own) and h2load (apt-get install nghttp2-client).
import { create, toBinary } from "@bufbuild/protobuf";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { ExecuteRequestSchema } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { cpuMicros, installCleanup, startOurs, stopAll, tempDir, track, type ServerChild } from "./children.ts";
import { EXECUTE } from "./grpc-client.ts";
import { writeGrpcFrame } from "./h2load.ts";
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

const cpuOf = (pids: readonly number[]) =>
  pids.reduce(
    (sum, p) =>
      sum +
      (() => {
        try {
          return cpuMicros(p);
        } catch {
          return 0;
        }
      })(),
    0,
  );

interface Round {
  reqPerSec: number;
  serverCores: number;
  loadCores: number;
}

/** One h2load run; CPU of the server's processes and of h2load over its measured seconds. */
async function drive(server: ServerChild, bodyFile: string): Promise<Round> {
  const args = ["-c", String(CONNECTIONS), "-m", String(STREAMS), "-D", String(SECONDS), "--warm-up-time=1"];
  args.push("-H", "content-type: application/grpc", "-H", "te: trailers", "-d", bodyFile, `http://127.0.0.1:${server.port}${EXECUTE}`);
  const child = track(spawn("h2load", args, { stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  let loadCpu = 0;
  // h2load's own CPU, read while it runs (it is gone once it exits).
  const poll = setInterval(() => {
    try {
      loadCpu = cpuMicros(child.pid!);
    } catch {
      // exited
    }
  }, 100);
  await new Promise((r) => setTimeout(r, 1000));
  const pids = serverPids(server.pid);
  const [cpu0, load0, t0] = [cpuOf(pids), loadCpu, performance.now()];
  await new Promise((r) => setTimeout(r, SECONDS * 1000 - 200));
  const [cpu1, load1, t1] = [cpuOf(pids), loadCpu, performance.now()];
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  clearInterval(poll);
  const rps = /finished in [^,]+, ([\d.]+) req\/s/.exec(out);
  const failed = /(\d+) failed, (\d+) errored/.exec(out);
  if (code !== 0 || !rps || (failed && (failed[1] !== "0" || failed[2] !== "0"))) throw new Error(`h2load failed:\n${out}`);
  const wallUs = (t1 - t0) * 1000;
  return { reqPerSec: Number(rps[1]), serverCores: (cpu1 - cpu0) / wallUs, loadCores: (load1 - load0) / wallUs };
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
  console.log(
    `load average at end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
}

await main();
