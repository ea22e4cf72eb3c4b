// h2load for bench/openai-real.ts: our gRPC port (HTTP/2, one connection, N
// streams) and the upstream called directly (--h1, N connections), with what
// bench/h2load.ts does not give: latency percentiles (--log-file) and h2load's
// own CPU. h2load runs under `sh`, which after h2load exits reads its own
// /proc stat, where the reaped child's CPU is (cutime, cstime): /proc of an
// exited process cannot be read.
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cpuMicros, tempDir, track } from "./children.ts";
import type { LoopResult, Summary } from "./light-client.ts";

/**
 * One h2load run, reported in the light client's shape so both sum up alike (no time to first
 * token: h2load does not read the body as it comes). `errors` counts failed, errored, timed-out
 * and non-2xx calls; in `cpuMicros`, "client" is h2load.
 */
export type H2loadCell = Omit<LoopResult, "ttftMs">;

export interface H2loadCellOptions {
  name: string;
  url: string;
  /** HTTP/1.1, one call in flight per connection (the upstream); else HTTP/2, on `connections` connections (default one). */
  h1: boolean;
  /** HTTP/2 connections sharing `inFlight` (a divisor of it): with server.workers, each connection reaches one worker. */
  connections?: number;
  headers: readonly string[];
  bodyFile: string;
  inFlight: number;
  seconds: number;
  warmupSeconds: number;
  /** Processes whose CPU to read over the window. */
  pids: Record<string, number>;
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
const WRAPPER = 'h2load "$@"; s=$?; read -r l < /proc/$$/stat; echo "H2LOAD-REAPED $l" >&2; exit $s';

/** Reaped children's CPU (cutime + cstime) of a /proc stat line, µs. */
function reapedMicros(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[13]) + Number(fields[14])) * 1e6) / CLK_TCK;
}

const ms = (s: number) => `${Math.round(s * 1000)}ms`;

export async function h2loadCell(o: H2loadCellOptions): Promise<H2loadCell> {
  const log = join(tempDir(), "h2load.tsv");
  const connections = o.connections ?? 1;
  const shape = o.h1 ? ["--h1", "-c", String(o.inFlight), "-m", "1"] : ["-c", String(connections), "-m", String(o.inFlight / connections)];
  const headers = o.headers.flatMap((h) => ["-H", h]);
  const args = [...shape, "-D", ms(o.seconds), `--warm-up-time=${ms(o.warmupSeconds)}`, `--log-file=${log}`, ...headers, "-d", o.bodyFile, o.url];
  const child = track(spawn("sh", ["-c", WRAPPER, "sh", ...args], { stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));

  let start: Record<string, number> = {};
  let h2loadAtStart = NaN;
  let wallStart = 0;
  const mark = setTimeout(() => {
    wallStart = performance.now();
    const pid = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(" ")[0]);
    h2loadAtStart = cpuMicros(pid);
    start = Object.fromEntries(Object.entries(o.pids).map(([k, p]) => [k, cpuMicros(p)]));
  }, o.warmupSeconds * 1000);
  const code = await new Promise<number | null>((res) => child.once("exit", (c) => res(c)));
  clearTimeout(mark);
  const cpu = Object.fromEntries(Object.entries(o.pids).map(([k, p]) => [k, cpuMicros(p) - start[k]!]));
  const windowMicros = (performance.now() - wallStart) * 1000;
  if (code !== 0) throw new Error(`h2load exited with ${code}:\n${out}`);
  const reaped = /H2LOAD-REAPED (.*)/.exec(out);
  if (!reaped) throw new Error(`h2load's CPU was not reported:\n${out}`);
  cpu.client = reapedMicros(reaped[1]!) - h2loadAtStart;

  const finished = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const requests = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const data = /traffic: .*?, [\d.]+\w*B \((\d+)\) data/.exec(out);
  if (!finished || !requests || !codes || !data) throw new Error(`cannot parse h2load output:\n${out}`);
  const ok = Number(codes[1]);
  const errors = Number(requests[2]) + Number(requests[3]) + Number(requests[4]) + Number(codes[2]) + Number(codes[3]) + Number(codes[4]);
  return {
    target: o.name,
    inFlight: o.inFlight,
    calls: ok,
    errors,
    ...(errors ? { firstError: `h2load: ${requests[0]}; ${codes[0]}` } : {}),
    reqPerSec: Number(finished[1]),
    latencyMs: latencies(log),
    bytesPerCall: ok ? Number(data[1]) / ok : 0,
    cpuMicros: cpu,
    windowMicros,
  };
}

/** p50 and p99 of the successful calls in h2load's log (it logs the measured window only). */
function latencies(file: string): Summary {
  const samples: number[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const [, status, micros] = line.split("\t");
    if (status && status.startsWith("2")) samples.push(Number(micros) / 1000);
  }
  const s = Float64Array.from(samples).sort();
  const at = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN);
  return { n: s.length, p50: at(50), p99: at(99) };
}
