// Our server in front of an OpenAI-compatible upstream, through the `openai`
// provider: the "≤ 150 µs server CPU per call, < 1 ms added time to first
// token at p50" targets of issue #6.
//
// The upstream is bench/fake-openai.ts in a process of its own; it streams its
// content chunks 1 ms apart so each reaches the server in a read of its own, as
// a model's tokens do.
// (a) CPU: h2load drives unary Execute calls through the server (the provider
//     still streams from upstream); server CPU per call comes from /proc of our
//     server's pid alone, so the upstream's CPU is not counted.
// (b) Added TTFT: one call at a time from this process, alternating between
//     the same upstream called directly with the `openai` npm client (what a
//     backend does without us) and ExecuteStream through our server (grpc-js),
//     each timed from the call to its first text. The direct call's time is
//     the upstream's own plus one client's; ours adds the gRPC hop, the
//     pipeline, and the provider's own request. The difference is what putting
//     our server in between costs a caller.
// BENCH_CPU_PROF=<dir> runs this phase's server with --cpu-prof into <dir>
// (written when it stops), for finding where the CPU per call goes.
import { create, toBinary } from "@bufbuild/protobuf";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import OpenAI from "openai";
import { ExecuteRequestSchema } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { root, startOurs, stop, tempDir, track, type ServerChild } from "./children.ts";
import { checkExecute, client, EXECUTE, openStream, percentile } from "./grpc-client.ts";
import { h2load, writeGrpcFrame, type H2loadRun } from "./h2load.ts";

/** The upstream spaces content chunks this far apart (the model name tells bench/fake-openai.ts). */
export const CHUNK_GAP_MS = 1;
const MODEL = `bench-gap${CHUNK_GAP_MS}ms`;
/** A short answer (3 chunks) for the TTFT calls, so there are many of them. */
const TTFT_TASK = "first token probe";
const UPSTREAM_KEY = "bench-upstream-key";

export interface OpenAIPhaseOptions {
  /** Our server's config without providers and agents (they are set here). */
  base: Record<string, unknown>;
  task: string;
  runs: number;
  seconds: number;
  warmupSeconds: number;
  shape: { connections: number; streams: number };
  ttftSeconds: number;
  /** A real answer's DATA is at least this many bytes a call (a gRPC error sends none). */
  minDataBytes: number;
  log: (line: string) => void;
  problems: string[];
}

export interface TtftSummary {
  calls: number;
  p50Ms: number;
  p99Ms: number;
}

export interface OpenAIPhaseResult {
  model: string;
  chunkGapMs: number;
  throughput: H2loadRun[];
  ttft: { direct: TtftSummary; ours: TtftSummary; errors: number };
}

export async function startUpstream(): Promise<{ url: string; child: ReturnType<typeof track> }> {
  const child = track(spawn(process.execPath, ["--import", "tsx", join(root, "bench/fake-openai.ts")], { cwd: root, stdio: ["ignore", "pipe", "inherit"] }));
  const port = await new Promise<number>((res, rej) => {
    createInterface({ input: child.stdout! }).once("line", (line) => res(JSON.parse(line).port));
    child.once("exit", (code) => rej(new Error(`fake OpenAI upstream exited (${code}) before listening`)));
  });
  return { url: `http://127.0.0.1:${port}/v1`, child };
}

/** Our server's config for this phase: one agent on the `openai` provider, pointed at the upstream. */
export function openaiConfig(base: Record<string, unknown>, baseUrl: string, model = MODEL, options: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...base,
    providers: { openai: { plugin: "openai", options: { baseUrl, apiKey: UPSTREAM_KEY, ...options } } },
    agents: [{ id: "openai", provider: "openai", model }],
  };
}

const summary = (samples: number[]): TtftSummary => {
  const sorted = Float64Array.from(samples).sort();
  return { calls: sorted.length, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
};

/** Time to the first content chunk, calling the upstream directly; the answer is read to its end, as a caller would. */
async function directTtft(upstream: OpenAI): Promise<number> {
  const t0 = performance.now();
  const stream = await upstream.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: TTFT_TASK }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let first = NaN;
  for await (const chunk of stream) if (Number.isNaN(first) && chunk.choices[0]?.delta?.content) first = performance.now() - t0;
  if (Number.isNaN(first)) throw new Error("the upstream streamed no content");
  return first;
}

/** Time to the first TextDelta through our server; the stream is read to its end. */
function oursTtft(c: ReturnType<typeof client>): Promise<number> {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    let first = NaN;
    const call = openStream(c, "openai", TTFT_TASK);
    call.on("data", (msg) => {
      if (Number.isNaN(first) && msg.event.case === "delta") first = performance.now() - t0;
    });
    call.on("error", rej);
    call.on("end", () => (Number.isNaN(first) ? rej(new Error("ExecuteStream sent no TextDelta")) : res(first)));
  });
}

async function ttft(server: ServerChild, upstreamUrl: string, seconds: number): Promise<OpenAIPhaseResult["ttft"]> {
  const upstream = new OpenAI({ baseURL: upstreamUrl, apiKey: UPSTREAM_KEY, maxRetries: 0 });
  const c = client(server.port);
  const direct: number[] = [];
  const ours: number[] = [];
  let errors = 0;
  try {
    // Warm-up: connections open (both hops), code compiled, on both sides.
    for (let i = 0; i < 50; i++) await Promise.all([directTtft(upstream), oursTtft(c)]);
    const stopAt = performance.now() + 2 * seconds * 1000;
    // One call at a time, alternating, so both see the same machine.
    while (performance.now() < stopAt) {
      try {
        direct.push(await directTtft(upstream));
        ours.push(await oursTtft(c));
      } catch (err) {
        if (++errors === 1) process.stderr.write(`bench: TTFT call failed: ${(err as Error).message}\n`);
        if (errors > 10) break;
      }
    }
  } finally {
    c.close();
  }
  return { direct: summary(direct), ours: summary(ours), errors };
}

export async function openaiPhase(o: OpenAIPhaseOptions): Promise<OpenAIPhaseResult> {
  const upstream = await startUpstream();
  let server: ServerChild | undefined;
  try {
    const profDir = process.env.BENCH_CPU_PROF;
    server = await startOurs("ours-openai", openaiConfig(o.base, upstream.url), {}, profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []);
    await checkExecute(server.port, o.task, "openai");
    const bodyFile = join(tempDir(), "execute-openai.bin");
    writeGrpcFrame(bodyFile, toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "openai", task: o.task })));

    const throughput: H2loadRun[] = [];
    for (let run = 0; run < o.runs; run++) {
      const r = await h2load(server, { ...o.shape, seconds: o.seconds, warmupSeconds: o.warmupSeconds, path: EXECUTE, bodyFile });
      throughput.push(r);
      o.log(
        `  h2load -c ${o.shape.connections} -m ${o.shape.streams} ours-openai      ${r.reqPerSec.toFixed(0).padStart(6)} req/s  ${r.cpuMicrosPerCall.toFixed(1).padStart(6)} µs CPU/call  ${r.serverCores.toFixed(2)} cores`,
      );
      if (r.failed || r.errored || r.timeout) o.problems.push(`ours-openai: h2load reported ${r.failed} failed, ${r.errored} errored, ${r.timeout} timeout`);
      if (r.dataBytesPerCall < o.minDataBytes)
        o.problems.push(
          `ours-openai: only ${r.dataBytesPerCall.toFixed(1)} DATA bytes per call (expected >= ${o.minDataBytes}): calls are failing with a gRPC status`,
        );
    }
    await checkExecute(server.port, o.task, "openai");

    const t = await ttft(server, upstream.url, o.ttftSeconds);
    server.assertAlive();
    o.log(
      `  TTFT openai upstream direct p50 ${t.direct.p50Ms.toFixed(2)} ms p99 ${t.direct.p99Ms.toFixed(2)} ms; through ours p50 ${t.ours.p50Ms.toFixed(2)} ms p99 ${t.ours.p99Ms.toFixed(2)} ms (${t.ours.calls} calls each)`,
    );
    if (t.errors) o.problems.push(`openai TTFT: ${t.errors} failed calls`);
    return { model: MODEL, chunkGapMs: CHUNK_GAP_MS, throughput, ttft: t };
  } finally {
    await Promise.all([server && stop(server.child), stop(upstream.child)]);
  }
}
