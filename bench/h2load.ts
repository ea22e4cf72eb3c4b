// Throughput runs with h2load: a C load generator, because a Node client tops
// out (~10-12k unary calls/s) below what a bare grpc-js server can serve.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpuMicros, track, type ServerChild } from "./children.ts";
import { BENCH_API_KEY } from "./grpc-client.ts";

/** One h2load run against one server. */
export interface H2loadRun {
  server: string;
  connections: number;
  streams: number;
  reqPerSec: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  /** HTTP/2 DATA bytes per successful call; a trailers-only gRPC error has none. */
  dataBytesPerCall: number;
  /** Server CPU (all threads) per successful call, measured after warm-up. */
  cpuMicrosPerCall: number;
  /** Server CPU time over wall time, in cores: near 1.0 means its event loop is saturated. */
  serverCores: number;
}

/** Writes one gRPC-framed message (flag byte 0 = uncompressed, 4-byte big-endian length, bytes). */
export function writeGrpcFrame(file: string, message: Uint8Array): void {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  writeFileSync(file, frame);
}

export interface H2loadOptions {
  connections: number;
  streams: number;
  seconds: number;
  warmupSeconds: number;
  path: string;
  bodyFile: string;
}

/**
 * Runs h2load and reads the server's CPU at the end of warm-up and at the end,
 * so CPU per call covers the same window as h2load's counts. A timer marks
 * warm-up's end because h2load's stdout is block-buffered into our pipe.
 */
export async function h2load(server: ServerChild, o: H2loadOptions): Promise<H2loadRun> {
  const args = [
    "-c",
    String(o.connections),
    "-m",
    String(o.streams),
    "-D",
    String(o.seconds),
    `--warm-up-time=${o.warmupSeconds}`,
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
    "-H",
    `authorization: Bearer ${BENCH_API_KEY}`,
    "-H",
    "cache-control: no-cache",
    "-d",
    o.bodyFile,
    `http://127.0.0.1:${server.port}${o.path}`,
  ];
  const child = track(spawn("h2load", args, { stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));

  let cpuStart = NaN;
  let wallStart = 0;
  const mark = setTimeout(() => {
    cpuStart = cpuMicros(server.pid);
    wallStart = performance.now();
  }, o.warmupSeconds * 1000);
  const code = await new Promise<number | null>((res) => child.once("exit", (c) => res(c)));
  clearTimeout(mark);
  server.assertAlive();
  const cpu = cpuMicros(server.pid) - cpuStart;
  const wall = (performance.now() - wallStart) * 1000;
  if (code !== 0) throw new Error(`h2load exited with ${code}:\n${out}`);

  const parsed = parseH2load(out);
  return {
    server: server.name,
    connections: o.connections,
    streams: o.streams,
    ...parsed,
    cpuMicrosPerCall: parsed.succeeded > 0 ? cpu / parsed.succeeded : NaN,
    serverCores: cpu / wall,
  };
}

type Parsed = Pick<H2loadRun, "reqPerSec" | "succeeded" | "failed" | "errored" | "timeout" | "dataBytesPerCall">;

/** Reads the "finished in", "requests:" and "traffic:" lines; anything missing is an error, not a zero. */
export function parseH2load(out: string): Parsed {
  const finished = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const requests = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const data = /traffic: .*?, [\d.]+\w*B \((\d+)\) data/.exec(out);
  if (!finished || !requests || !data) throw new Error(`cannot parse h2load output:\n${out}`);
  const succeeded = Number(requests[1]);
  return {
    reqPerSec: Number(finished[1]),
    succeeded,
    failed: Number(requests[2]),
    errored: Number(requests[3]),
    timeout: Number(requests[4]),
    dataBytesPerCall: succeeded > 0 ? Number(data[1]) / succeeded : 0,
  };
}
