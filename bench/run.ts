// `npm run bench`: our server against a bare grpc-js server on the same
// methods and wire types, on this machine, in one session. Only ratios mean
// anything across machines and days; see /work/shared/notes/benchmarking.md.
//
// BENCH_RUNS (default 3) and BENCH_SECONDS (default 5) size the throughput
// runs; the latency and streaming phases scale with BENCH_SECONDS. Then the
// speed targets of issue #6 (bench/targets.ts): token latency, memory per idle
// stream (BENCH_IDLE_STREAMS, default 10000), and the openai provider
// (BENCH_CPU_PROF=<dir> profiles its server). Last the tools phase, issue
// #16's targets (bench/tools-phase.ts; alone: npm run bench:tools); then the
// runs phase, issue #17's, on PostgreSQL (bench/runs-phase.ts; npm run bench:runs).
import { execFileSync } from "node:child_process";
import { create, toBinary } from "@bufbuild/protobuf";
import { cpus } from "node:os";
import { join } from "node:path";
import { ExecuteRequestSchema, ExecuteResponseSchema } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { installCleanup, root, rssKiB, startBare, startOurs, stopAll, tempDir, type ServerChild } from "./children.ts";
import { FULL_SUITE, FULL_SUITE_REDACT, oursConfig, otlpSink } from "./servers.ts";
import { checkExecute, EXECUTE, latency, streaming, type LatencyRun, type StreamRun } from "./grpc-client.ts";
import { h2load, writeGrpcFrame, type H2loadRun } from "./h2load.ts";
import { idleConfig, idleStreamsPhase } from "./idle-streams.ts";
import { openaiPhase } from "./openai-phase.ts";
import { median, table, targetsTable, versusTable, writeJson, type Row } from "./report.ts";
import { targetRows } from "./targets.ts";
import { tokenLatencyPhase, type TokenLatencyOptions } from "./token-latency.ts";
import { toolsPhase, toolsSettings, toolTargetRows, toolTargetsTable } from "./tools-phase.ts";
import { runsPhase, runsSettings, runTargetRows, runTargetsTable } from "./runs-phase.ts";

const RUNS = positiveInt("BENCH_RUNS", 3);
const SECONDS = positiveInt("BENCH_SECONDS", 5);
const WARMUP_SECONDS = 1;
const LOAD_SHAPES = [
  { connections: 1, streams: 64 },
  { connections: 4, streams: 64 },
];
const IN_FLIGHT = [1, 16, 64];
const LATENCY_SECONDS = Math.max(1, SECONDS * 0.4);
const STREAM_SECONDS = Math.max(1, SECONDS * 0.6);
const STREAM_WORDS = 2000;
// Token latency: 16 streams on one connection, each a token every 10 ms (1,600 tokens/s in all).
const TOKENS: TokenLatencyOptions = { streams: 16, intervalMs: 10, tokensPerStream: 50, seconds: LATENCY_SECONDS, warmupSeconds: 0.5 };
const IDLE_STREAMS = positiveInt("BENCH_IDLE_STREAMS", 10_000);
// Our server's per-connection stream limit is raised for this phase; 20 connections keep each well under it.
const IDLE_CONNECTIONS = 20;
const IDLE_MAX_STREAMS_PER_CONNECTION = 1000;

const TASK = "summarise the quarterly report for the board in three short sentences";
const REDACT = "ours-full-redact";
const STREAM_TASK = Array.from({ length: STREAM_WORDS }, (_, i) => `word${i}`).join(" ");

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`${name}: expected a positive integer, got "${raw}"`);
  return Number(raw);
}

// Each run starts from a different server so none is always measured first (or last) in a round.
const rotate = <T>(xs: readonly T[], by: number): T[] => xs.map((_, i) => xs[(i + by) % xs.length]!);

const log = (line: string) => process.stderr.write(`${line}\n`);

function requireH2load(): void {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
  } catch {
    log("bench: h2load not found; it drives the throughput rows (a Node client saturates first). Install it: apt-get install nghttp2-client");
    process.exit(2);
  }
}

async function main(): Promise<void> {
  requireH2load();
  installCleanup();
  const started = Date.now();
  log(`bench: ${RUNS} run(s) x ${SECONDS}s per throughput point, Node ${process.version}`);

  const servers: ServerChild[] = await Promise.all([
    startBare(),
    startOurs("ours", oursConfig()),
    startOurs("ours-no-pipeline", oursConfig([])),
    startOurs("ours-full-suite", oursConfig(FULL_SUITE)),
    // The default pipeline with everything observed: every span exported over OTLP (to a sink that
    // discards), metrics recorded for /metrics. What an operator pays for full visibility.
    startOurs(
      "ours-observed",
      { ...oursConfig(), server: { host: "127.0.0.1", shutdownGraceMs: 1000, metricsPort: 0 } },
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: (await otlpSink()).url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      },
    ),
    // The issue's second throughput target: the full suite with every call traced and exported (no metrics).
    startOurs("ours-full-traced", oursConfig(FULL_SUITE), {
      OTEL_EXPORTER_OTLP_ENDPOINT: (await otlpSink()).url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_METRICS_EXPORTER: "none",
    }),
    startOurs(REDACT, oursConfig(FULL_SUITE_REDACT)),
  ]);
  const names = servers.map((s) => s.name);
  const rss: Record<string, { idleKiB: number; peakKiB: number; endKiB: number }> = {};
  const sampleRss = (s: ServerChild) => {
    const r = (rss[s.name] ??= { idleKiB: rssKiB(s.pid), peakKiB: 0, endKiB: 0 });
    r.endKiB = rssKiB(s.pid);
    r.peakKiB = Math.max(r.peakKiB, r.endKiB);
  };

  // h2load counts any HTTP 200 as success, and a gRPC error is an HTTP 200 too: prove each server answers OK first.
  const request = create(ExecuteRequestSchema, { agentId: "echo", task: TASK });
  for (const s of servers) {
    await checkExecute(s.port, TASK);
    sampleRss(s);
  }
  // A trailers-only error response carries no DATA; a real answer carries at least a frame this size.
  const minDataBytes = 5 + toBinary(ExecuteResponseSchema, create(ExecuteResponseSchema, { result: { output: TASK } })).length;
  const bodyFile = join(tempDir(), "execute-request.bin");
  writeGrpcFrame(bodyFile, toBinary(ExecuteRequestSchema, request));
  const problems: string[] = [];

  const throughput: H2loadRun[] = [];
  for (let run = 0; run < RUNS; run++) {
    for (const shape of LOAD_SHAPES) {
      for (const s of rotate(servers, run)) {
        const r = await h2load(s, { ...shape, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, path: EXECUTE, bodyFile });
        throughput.push(r);
        sampleRss(s);
        log(
          `  h2load -c ${shape.connections} -m ${shape.streams} ${s.name.padEnd(16)} ${r.reqPerSec.toFixed(0).padStart(6)} req/s  ${r.cpuMicrosPerCall.toFixed(1).padStart(6)} µs CPU/call  ${r.serverCores.toFixed(2)} cores`,
        );
        if (r.failed || r.errored || r.timeout)
          problems.push(`${s.name} -c ${shape.connections}: h2load reported ${r.failed} failed, ${r.errored} errored, ${r.timeout} timeout`);
        if (r.dataBytesPerCall < minDataBytes)
          problems.push(
            `${s.name} -c ${shape.connections}: only ${r.dataBytesPerCall.toFixed(1)} DATA bytes per call (expected >= ${minDataBytes}): calls are failing with a gRPC status`,
          );
      }
    }
  }
  // Still answering correctly after the load, not just still alive.
  for (const s of servers) await checkExecute(s.port, TASK);

  const latencies: LatencyRun[] = [];
  for (const inFlight of IN_FLIGHT) {
    for (const s of servers) {
      const r = await latency(s.name, s.port, request, inFlight, LATENCY_SECONDS, 0.5);
      s.assertAlive();
      latencies.push(r);
      log(
        `  latency ${String(inFlight).padStart(2)} in flight ${s.name.padEnd(16)} p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  (${r.callsPerSec.toFixed(0)} calls/s)`,
      );
      if (r.errors) problems.push(`${s.name}: ${r.errors} failed calls at ${inFlight} in flight (grpc-js client)`);
    }
  }

  const streams: StreamRun[] = [];
  for (const s of servers) {
    // redact releases held-back text in pieces of several words: fewer, larger messages, each counted once.
    const r = await streaming(s.name, s.port, STREAM_TASK, s.name === REDACT ? 1 : STREAM_WORDS, STREAM_SECONDS);
    s.assertAlive();
    sampleRss(s);
    streams.push(r);
    log(`  stream ${s.name.padEnd(16)} ${r.msgsPerSec.toFixed(0)} msgs/s over ${r.calls} calls`);
  }

  // The speed targets of issue #6 beyond the rows above: token latency on the bare server and ours
  // (default pipeline); then, with these servers stopped, servers of their own for memory and openai.
  const tokens = await tokenLatencyPhase(servers.slice(0, 2), RUNS, TOKENS, log, problems);
  await stopAll();
  const idle = await idleStreamsPhase(idleConfig(oursConfig(), IDLE_MAX_STREAMS_PER_CONNECTION), IDLE_STREAMS, IDLE_CONNECTIONS, log);
  const openai = await openaiPhase({
    base: oursConfig(),
    task: TASK,
    runs: RUNS,
    seconds: SECONDS,
    warmupSeconds: WARMUP_SECONDS,
    shape: LOAD_SHAPES[0]!,
    ttftSeconds: LATENCY_SECONDS,
    minDataBytes,
    log,
    problems,
  });
  const toolsSetup = toolsSettings(TASK);
  const tools = await toolsPhase({ ...toolsSetup, log, problems });
  const toolRows = toolTargetRows(tools);
  // Issue #17's rows last (bench/runs-phase.ts; alone: npm run bench:runs): PostgreSQL in a schema of its own.
  const runsSetup = runsSettings(TASK);
  const runs = await runsPhase({ ...runsSetup, log, problems });
  const runRows = runTargetRows(runs);

  const rows: Row[] = [];
  const perServer = (pick: (name: string) => number) => Object.fromEntries(names.map((n) => [n, pick(n)]));
  for (const { connections: c, streams: m } of LOAD_SHAPES) {
    const of = (n: string) => throughput.filter((r) => r.server === n && r.connections === c);
    rows.push({ metric: `unary calls/s (h2load -c ${c} -m ${m})`, better: "higher", values: perServer((n) => median(of(n).map((r) => r.reqPerSec))) });
    rows.push({ metric: `server CPU µs/call (-c ${c})`, better: "lower", values: perServer((n) => median(of(n).map((r) => r.cpuMicrosPerCall))) });
    rows.push({ metric: `server cores busy (-c ${c})`, better: "neither", values: perServer((n) => median(of(n).map((r) => r.serverCores))) });
  }
  for (const k of IN_FLIGHT) {
    const at = (n: string) => latencies.find((r) => r.server === n && r.inFlight === k)!;
    rows.push({ metric: `p50 ms, ${k} in flight (grpc-js)`, better: "lower", values: perServer((n) => at(n).p50Ms) });
    rows.push({ metric: `p99 ms, ${k} in flight (grpc-js)`, better: "lower", values: perServer((n) => at(n).p99Ms) });
  }
  const stream = (n: string) => streams.find((r) => r.server === n)!;
  // Not comparable for redact, whose messages are merged deltas; whole streams per second are.
  rows.push({ metric: `stream msgs/s (${STREAM_WORDS}-word task)`, better: "higher", values: perServer((n) => (n === REDACT ? NaN : stream(n).msgsPerSec)) });
  rows.push({
    metric: `stream calls/s (${STREAM_WORDS}-word task, one at a time)`,
    better: "higher",
    values: perServer((n) => (stream(n).calls * stream(n).msgsPerSec) / stream(n).messages),
  });
  rows.push({ metric: "RSS MiB, idle after start", better: "lower", values: perServer((n) => rss[n]!.idleKiB / 1024) });
  rows.push({ metric: "RSS MiB, peak", better: "lower", values: perServer((n) => rss[n]!.peakKiB / 1024) });
  const targets = targetRows({
    bare: names[0]!,
    ours: names[1]!,
    streams,
    streamWords: STREAM_WORDS,
    throughput,
    shape: LOAD_SHAPES[0]!,
    tokens,
    idle,
    openai,
  });

  const [baseline, ...others] = names;
  console.log(`\n${table(rows, baseline!, others)}\n`);
  console.log(`ratios are ${others.join(" and ")} divided by ${baseline}; "better" says which way is good (cores busy near 1.0 = one saturated event loop).`);
  const redactRows = rows.filter((r) => /^(unary calls\/s|server CPU|p50 ms, 64|stream calls\/s)/.test(r.metric));
  console.log(
    `\nwhat redact adds: the full suite + redact (default options, innermost) against the full suite and bare grpc-js\n\n${versusTable(redactRows, REDACT, ["ours-full-suite", baseline!])}`,
  );
  console.log(`\n${targetsTable(targets)}\n`);
  console.log(`${toolTargetsTable(toolRows)}\n`);
  console.log(`${runTargetsTable(runRows)}\n`);
  console.log(
    "ours = the default pipeline (logging, validation); token latency: medians over runs of 16 streams x 1 token / 10 ms, arrival minus the time stamped in the token; TTFT: one call at a time, alternating.",
  );
  if (problems.length) console.log(`\nPROBLEMS:\n${problems.map((p) => `- ${p}`).join("\n")}`);
  else console.log("\nno errors: every h2load run had 0 failed/errored and full responses; grpc-js checks answered OK.");

  const file = join(root, "bench/results/latest.json");
  writeJson(file, {
    date: new Date().toISOString(),
    node: process.version,
    h2load: execFileSync("h2load", ["--version"], { encoding: "utf8" }).trim(),
    cpus: { count: cpus().length, model: cpus()[0]?.model },
    settings: {
      runs: RUNS,
      seconds: SECONDS,
      warmupSeconds: WARMUP_SECONDS,
      loadShapes: LOAD_SHAPES,
      inFlight: IN_FLIGHT,
      latencySeconds: LATENCY_SECONDS,
      streamSeconds: STREAM_SECONDS,
      streamWords: STREAM_WORDS,
      task: TASK,
      tokenLatency: TOKENS,
      idleStreams: { streams: IDLE_STREAMS, connections: IDLE_CONNECTIONS, maxConcurrentStreams: IDLE_MAX_STREAMS_PER_CONNECTION },
      openai: { model: openai.model, chunkGapMs: openai.chunkGapMs, shape: LOAD_SHAPES[0] },
      tools: toolsSetup,
      durableRuns: runsSetup,
    },
    servers: {
      bare: "bench/bare-server.ts",
      ours: oursConfig(),
      "ours-no-pipeline": oursConfig([]),
      "ours-full-suite": oursConfig(FULL_SUITE),
      [REDACT]: oursConfig(FULL_SUITE_REDACT),
      "ours-observed": "default pipeline + OTLP tracing + metrics",
      "ours-idle": "ours + an echo agent with tokenDelayMs 600000",
      "ours-openai": "ours with one agent on the openai provider, upstream bench/fake-openai.ts",
      "ours-tools": "ours + tool plugin bench-const and an agent that may call it (bench/tool-steps.ts)",
    },
    rows,
    targets,
    toolTargets: toolRows,
    runTargets: runRows,
    problems,
    memory: rss,
    raw: { throughput, latency: latencies, streaming: streams, tokenLatency: tokens, idleStreams: idle, openai, tools, durableRuns: runs },
    wallSeconds: (Date.now() - started) / 1000,
  });
  log(`bench: wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    log(`bench failed: ${(err as Error).stack ?? String(err)}`);
    await stopAll();
    process.exit(1);
  },
);
