// Idle memory of `npm start` (#18, "lighter at rest": ≤ 90 MiB). The server is started
// as npm start starts it (bin/qingyu.mjs serve --config config/example.yaml; free ports
// instead of 50051/8080), left idle, and its resident set read from /proc/<pid>/status.
// Beside it, two floors it cannot go under: Node with nothing loaded, and Node with tsx
// registered (what bin/qingyu.mjs does before any server code loads). Read twice: 5 s after
// start, and 15 s after, once V8's memory reducer (which runs after some seconds without
// work) has given back the start-up's garbage; the target is judged at rest, on the second.
//
//   node --import tsx bench/idle-rss.ts
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { installCleanup, root, stop, track } from "./children.ts";

const RUNS = 3;
/** When memory is read, ms after the process is ready: early, and at rest. */
const READ_AT_MS = [5000, 15000] as const;
const TARGET_MIB = 90;

// A user's shell without the variables that make the default config open more (Redis,
// PostgreSQL, telemetry, the openai agent): the config alone decides what loads.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(REDIS_URL|DATABASE_URL|OTEL_.*|OPENAI_.*|HOST|NODE_OPTIONS)$/.test(k)));

/** VmRSS, RssAnon and RssFile of `pid`, MiB. */
function memory(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { rss: kib("VmRSS") / 1024, anon: kib("RssAnon") / 1024, file: kib("RssFile") / 1024 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `args` under node, waits until `ready` resolves, idles, reads its memory at each of READ_AT_MS, stops it. */
async function idleMemory(args: string[], ready: (child: ChildProcess) => Promise<void>) {
  const child = track(spawn(process.execPath, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] }));
  try {
    await ready(child);
    const readyAt = Date.now();
    const reads: ReturnType<typeof memory>[] = [];
    for (const at of READ_AT_MS) {
      await sleep(at - (Date.now() - readyAt));
      reads.push(memory(child.pid!));
    }
    return reads;
  } finally {
    await stop(child);
  }
}

/** Resolves at the server's "listening" line; rejects if it exits first. */
function listening(child: ChildProcess): Promise<void> {
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.includes('"msg":"listening"')) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the server exited (${code}) before listening:\n${stderr}`)));
  });
}

const started = async () => {};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Prints a row per reading time; returns the median RSS at each. */
async function row(label: string, args: string[], ready: (child: ChildProcess) => Promise<void>): Promise<number[]> {
  const runs: Array<ReturnType<typeof memory>[]> = [];
  for (let i = 0; i < RUNS; i++) runs.push(await idleMemory(args, ready));
  return READ_AT_MS.map((ms, k) => {
    const reads = runs.map((r) => r[k]!);
    const rss = median(reads.map((r) => r.rss));
    const at = reads.find((r) => r.rss === rss)!;
    const each = reads.map((r) => r.rss.toFixed(0)).join(", ");
    const name = `${label}, at ${ms / 1000} s`;
    console.log(`  ${name.padEnd(50)} ${rss.toFixed(1).padStart(6)} MiB  (anon ${at.anon.toFixed(1)}, file ${at.file.toFixed(1)}; runs ${each})`);
    return rss;
  });
}

installCleanup();
console.log(`idle RSS ${READ_AT_MS.map((ms) => ms / 1000).join(" and ")} s after start, median of ${RUNS} runs, Node ${process.version}`);
const idle = "setInterval(() => {}, 1 << 30)";
await row("node, nothing loaded", ["-e", idle], started);
await row("node with tsx registered", ["--import", "tsx", "-e", idle], started);
const server = await row(
  "npm start (config/example.yaml)",
  ["bin/qingyu.mjs", "serve", "--config", "config/example.yaml", "--port", "0", "--http-port", "0"],
  listening,
);
const [early, rest] = server as [number, number];
console.log(
  `\nnpm start idle: ${rest.toFixed(1)} MiB at rest (${early.toFixed(1)} at ${READ_AT_MS[0] / 1000} s), target ≤ ${TARGET_MIB} MiB: ${rest <= TARGET_MIB ? "met" : "NOT met"}`,
);
