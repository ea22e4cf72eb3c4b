// `npm run bench:openai` (and the last phase of `npm run bench`): the path
// users run, measured honestly — issue #18, item 1. A backend calls our server;
// its `openai` provider calls an OpenAI-compatible upstream (bench/fake-openai.ts,
// a process of its own) that answers at once, so every cost measured is a
// hop's, not a model's. Against it, "direct": the same load generator calling
// the upstream itself, what the backend would do without us.
//
// The matrix: answer form (unary Execute; ExecuteStream) x answer size (20,
// 200 tokens: one per word of the task) x calls in flight (1, 16, 64) x port:
// - gRPC port, driven by h2load (C; one connection, N streams); direct is
//   h2load --h1 against the upstream (N connections), JSON for unary (what a
//   backend asks for when it wants one answer), SSE for streamed.
// - Connect/HTTP port, driven by bench/light-client.ts (node:http, keep-alive;
//   Execute as JSON, ExecuteStream as Connect streaming); direct is the same
//   client against the upstream. Not the `openai` npm client: its own cost
//   (~130 µs a call) on the direct side would hide part of ours.
// Each cell runs direct and ours back to back, who goes first alternating by
// round, for BENCH_OPENAI_ROUNDS rounds (default 3) of BENCH_OPENAI_SECONDS
// (0.75) after BENCH_OPENAI_WARMUP_SECONDS (0.25); the table shows medians.
// CPU comes from /proc/<pid>/stat of each process alone over the measured
// window: our server's (the "server CPU per call" of the targets), the
// upstream's, and the load generator's own — the machine has 2 cores, and a
// load generator or upstream that takes one caps what anyone can show.
// Then two alternations, one call at a time, each target in turn:
// - time to first token (first content byte at the client) for a 200-token
//   streamed answer: direct SSE vs Connect streaming, SSE and gRPC (node:http2)
//   through ours, for BENCH_OPENAI_TTFT_SECONDS (4);
// - token → client: the upstream writes a token a millisecond, each stamped
//   with its send time; each token's arrival minus its stamp, direct vs ours,
//   BENCH_OPENAI_GAP_CALLS (6) calls each. Clock offsets between the processes
//   cancel in the difference.
// BENCH_OPENAI_IN_FLIGHT ("1,16,64") and BENCH_OPENAI_TOKENS ("20,200") narrow
// the matrix; BENCH_OPENAI_WHOLE_ANSWERS=json sets the provider's wholeAnswers
// option (a unary Execute asks the upstream for one JSON answer, not a stream). About 3 minutes. Writes bench/results/openai.json.
import { execFileSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { httpPortOf, installCleanup, root, startOurs, stop } from "./children.ts";
import { EXECUTE, EXECUTE_STREAM } from "./grpc-client.ts";
import { LightClient } from "./openai-real-client.ts";
import { h2loadCell } from "./openai-real-h2load.ts";
import type { Summary } from "./light-client.ts";
import {
  latencyTable,
  pooled,
  summarise,
  targetRows,
  targetsTable,
  throughputTable,
  type Cell,
  type CellSummary,
  type Measured,
  type TargetRow,
} from "./openai-real-report.ts";
import { referenceBytes } from "./openai-real-check.ts";
import { AGENTS, connectStream, connectUnary, direct, grpcStream, h2loadBodies, sse, type Endpoints } from "./openai-real-targets.ts";
import { startUpstream } from "./openai-phase.ts";
import { ceiling, ceilingTable, ECHO_AGENT, ECHO_PROVIDER, type CeilingRow } from "./openai-real-ceiling.ts";
import { oursConfig } from "./servers.ts";
import { writeJson } from "./report.ts";

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!(n > 0)) throw new Error(`${name}: expected a positive number, got "${raw}"`);
  return n;
}
function list(name: string, fallback: string): number[] {
  const raw = process.env[name] || fallback;
  const xs = raw.split(",").map(Number);
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`${name}: expected positive integers separated by commas, got "${raw}"`);
  return xs;
}

const settings = {
  rounds: Math.round(positive("BENCH_OPENAI_ROUNDS", 3)),
  seconds: positive("BENCH_OPENAI_SECONDS", 0.75),
  warmupSeconds: positive("BENCH_OPENAI_WARMUP_SECONDS", 0.25),
  inFlight: list("BENCH_OPENAI_IN_FLIGHT", "1,16,64"),
  tokens: list("BENCH_OPENAI_TOKENS", "20,200"),
  ttftSeconds: positive("BENCH_OPENAI_TTFT_SECONDS", 4),
  gapCalls: Math.round(positive("BENCH_OPENAI_GAP_CALLS", 6)),
  /** The answer size of the TTFT and token-latency rows (the target's). */
  streamTokens: 200,
  /** The provider's wholeAnswers option: how a unary Execute asks the upstream (stream, the default, or json). */
  wholeAnswers: process.env.BENCH_OPENAI_WHOLE_ANSWERS === "json" ? "json" : "stream",
};
const UPSTREAM_KEY = "bench-upstream-key";

const log = (line: string) => process.stderr.write(`${line}\n`);

function serverConfig(upstreamUrl: string): Record<string, unknown> {
  return {
    ...oursConfig(),
    providers: {
      openai: { plugin: "openai", options: { baseUrl: upstreamUrl, apiKey: UPSTREAM_KEY, wholeAnswers: settings.wholeAnswers } },
      [ECHO_AGENT.provider]: ECHO_PROVIDER,
    },
    agents: [...Object.values(AGENTS).map((a) => ({ id: a.id, provider: "openai", model: a.model })), ECHO_AGENT],
  };
}

const rotate = <T>(xs: readonly T[], by: number): T[] => xs.map((_, i) => xs[(i + by) % xs.length]!);

async function main(): Promise<void> {
  execFileSync("h2load", ["--version"], { stdio: "ignore" }); // drives the gRPC rows; apt-get install nghttp2-client
  installCleanup();
  const started = Date.now();
  const load = { start: loadavg() };
  log(
    `bench:openai: ${settings.rounds} round(s) x ${settings.seconds}s (+${settings.warmupSeconds}s warm-up) per cell and side, Node ${process.version}, wholeAnswers: ${settings.wholeAnswers}`,
  );
  const upstream = await startUpstream();
  const server = await startOurs("ours-openai", serverConfig(upstream.url));
  const client = await LightClient.start();
  const problems: string[] = [];
  try {
    const e: Endpoints = { upstreamUrl: upstream.url, grpcPort: server.port, httpPort: httpPortOf(server) };
    const minBytes = await referenceBytes(e, client, settings.tokens, settings.streamTokens);
    const bodies = Object.fromEntries(settings.tokens.map((t) => [t, h2loadBodies(e, t)]));
    const pids = { ours: { server: server.pid, upstream: upstream.child.pid! }, direct: { upstream: upstream.child.pid! } };

    const measure = async (cell: Cell, side: Measured["side"], seconds = settings.seconds): Promise<Measured["run"]> => {
      const common = { inFlight: cell.inFlight, seconds, warmupSeconds: settings.warmupSeconds, pids: pids[side] };
      const stream = cell.answer === "stream";
      if (cell.port === "connect") {
        const target = side === "direct" ? direct(e, cell.tokens, stream) : stream ? connectStream(e, cell.tokens) : connectUnary(e, cell.tokens);
        return client.loop({ ...common, target });
      }
      const b = bodies[cell.tokens]!;
      if (side === "direct") {
        const url = `${e.upstreamUrl}/chat/completions`;
        return h2loadCell({
          ...common,
          name: "direct",
          url,
          h1: true,
          headers: ["content-type: application/json"],
          bodyFile: stream ? b.directStream : b.directUnary,
        });
      }
      const url = `http://127.0.0.1:${e.grpcPort}${stream ? EXECUTE_STREAM : EXECUTE}`;
      return h2loadCell({
        ...common,
        name: "grpc",
        url,
        h1: false,
        headers: ["content-type: application/grpc", "te: trailers"],
        bodyFile: stream ? b.stream : b.unary,
      });
    };

    const cells: Cell[] = settings.tokens.flatMap((tokens) =>
      (["unary", "stream"] as const).flatMap((answer) =>
        settings.inFlight.flatMap((inFlight) => (["grpc", "connect"] as const).map((port) => ({ port, answer, tokens, inFlight }))),
      ),
    );
    // Code paths compiled and connections open on every side before anything counts.
    for (const cell of cells.filter((c) => c.inFlight === Math.max(...settings.inFlight) && c.tokens === settings.tokens[0])) {
      for (const side of ["direct", "ours"] as const) await measure(cell, side, 0.5);
    }
    const measured: Measured[] = [];
    for (let round = 0; round < settings.rounds; round++) {
      for (const cell of rotate(cells, round)) {
        for (const side of round % 2 ? (["ours", "direct"] as const) : (["direct", "ours"] as const)) {
          const run = await measure(cell, side);
          server.assertAlive();
          measured.push({ round, side, cell, run });
          const what = `${side} ${cell.port} ${cell.answer} ${cell.tokens}t x${cell.inFlight}`.padEnd(30);
          log(
            `  r${round} ${what} ${run.reqPerSec.toFixed(0).padStart(6)} req/s  p50 ${run.latencyMs.p50.toFixed(2)} ms  p99 ${run.latencyMs.p99.toFixed(2)} ms`,
          );
          if (run.errors) problems.push(`round ${round}, ${what.trim()}: ${run.errors} failed calls; first: ${run.firstError}`);
          const min = side === "ours" && cell.port === "grpc" ? minBytes[cell.tokens]![cell.answer] : 0;
          if (run.calls && run.bytesPerCall < min)
            problems.push(`round ${round}, ${what.trim()}: ${run.bytesPerCall.toFixed(0)} DATA bytes a call, a whole answer has ${min}`);
        }
      }
    }

    const top = Math.max(...settings.inFlight);
    log(`  the ceiling: the mock, ours (openai, echo) and bare grpc-js, unary, ${top} in flight`);
    const ceilings = await ceiling({
      tokens: settings.tokens,
      inFlight: top,
      rounds: settings.rounds,
      seconds: settings.seconds,
      warmupSeconds: settings.warmupSeconds,
      upstreamUrl: e.upstreamUrl,
      server,
      upstreamPid: upstream.child.pid!,
      bodies: (t) => bodies[t]!,
      log,
    });

    const t = settings.streamTokens;
    log(`  time to first token, ${t} tokens, one call at a time, alternating (${settings.ttftSeconds} s)`);
    const ttftRun = await client.alternate({
      targets: [direct(e, t, true), connectStream(e, t), sse(e, t), grpcStream(e, t)],
      seconds: settings.ttftSeconds,
      warmupCalls: 20,
      stamps: false,
    });
    log(`  token → client, ${t} tokens a ms apart, ${settings.gapCalls} calls each`);
    const paced = [direct(e, t, true, AGENTS.paced), connectStream(e, t, AGENTS.paced), sse(e, t, AGENTS.paced)];
    const tokenRun = await client.alternate({ targets: paced, seconds: 600, maxRounds: settings.gapCalls, warmupCalls: 1, stamps: true });
    server.assertAlive();
    for (const [name, r] of Object.entries({ ...ttftRun.byTarget }))
      if (r.errors) problems.push(`TTFT ${name}: ${r.errors} failed calls; first: ${r.firstError}`);
    for (const [name, r] of Object.entries(tokenRun.byTarget)) {
      if (r.errors) problems.push(`token latency ${name}: ${r.errors} failed calls; first: ${r.firstError}`);
      if (r.tokenLatencyMs.length !== r.calls * t)
        problems.push(`token latency ${name}: ${r.tokenLatencyMs.length} stamped tokens in ${r.calls} calls, expected ${t} each`);
    }

    const summary = summarise(cells, measured);
    const ttft = pooled(ttftRun, "ttftMs");
    const tokenLatency = pooled(tokenRun, "tokenLatencyMs");
    const tokenGaps = pooled(tokenRun, "tokenGapMs");
    const targets = targetRows({ cells: summary, top: Math.max(...settings.inFlight), ttft, tokenLatency, streamTokens: t });
    print({ summary, ttft, tokenLatency, tokenGaps, targets, ceilings, problems, loadStart: load.start });
    const file = join(root, "bench/results/openai.json");
    writeJson(file, {
      date: new Date().toISOString(),
      node: process.version,
      h2load: execFileSync("h2load", ["--version"], { encoding: "utf8" }).trim(),
      cpus: { count: cpus().length, model: cpus()[0]?.model },
      loadavg: { ...load, end: loadavg() },
      settings,
      server: serverConfig(upstream.url),
      cells: summary,
      ttft,
      tokenLatency,
      tokenGaps,
      targets,
      ceilings: ceilings.map(({ runs: _, ...row }) => row),
      problems,
      raw: { measured, ttftSamples: ttftRun, tokenCalls: Object.fromEntries(Object.entries(tokenRun.byTarget).map(([k, v]) => [k, v.calls])) },
      wallSeconds: (Date.now() - started) / 1000,
    });
    log(`bench:openai: wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  } finally {
    await Promise.all([client.close(), stop(server.child), stop(upstream.child)]);
  }
}

interface Printed {
  summary: CellSummary[];
  ttft: Record<string, Summary>;
  tokenLatency: Record<string, Summary>;
  tokenGaps: Record<string, Summary>;
  targets: TargetRow[];
  ceilings: CeilingRow[];
  problems: string[];
  loadStart: number[];
}

function print({ summary, ttft, tokenLatency, tokenGaps, targets, ceilings, problems, loadStart }: Printed): void {
  const f = (x: number) => x.toFixed(2);
  console.log(`\n## openai provider, real path (medians of ${settings.rounds} rounds; ours and direct in the same rounds)\n`);
  console.log(`${throughputTable(summary)}\n`);
  console.log(`${latencyTable(summary)}\n`);
  const line = (name: string, s: Summary, d: Summary) =>
    `| ${name} | ${s.n} | ${f(s.p50)} | ${f(s.p99)} | ${name === "direct" ? "" : `${f(s.p50 - d.p50)} / ${f(s.p99 - d.p99)}`} |`;
  console.log(`| TTFT, ${settings.streamTokens} tokens, 1 in flight | calls | p50 ms | p99 ms | added p50 / p99 ms |\n|---|---|---|---|---|`);
  for (const [name, s] of Object.entries(ttft)) console.log(line(name, s, ttft.direct!));
  console.log(`\n| token → client, a token a ms | tokens | p50 ms | p99 ms | added p50 / p99 ms | gap p50 / p99 ms |\n|---|---|---|---|---|---|`);
  for (const [name, s] of Object.entries(tokenLatency))
    console.log(`${line(name, s, tokenLatency.direct!)} ${f(tokenGaps[name]!.p50)} / ${f(tokenGaps[name]!.p99)} |`);
  console.log(`\n${targetsTable(targets)}\n`);
  console.log(`${ceilingTable(ceilings, Math.max(...settings.inFlight))}\n`);
  console.log(
    [
      "Server CPU is our server's process alone (/proc/<pid>/stat utime+stime over the measured window / calls in it); the upstream's and the load generator's own",
      "(the light client's /proc; h2load's through its shell's reaped-child time) are read the same way and shown beside it, since all three share",
      `${cpus().length} cores. /proc counts in clock ticks (10 ms): a per-call figure under 10 ms / calls (h2load's, at low rates) is at that resolution.`,
      `Unary Execute: direct asks the upstream for one JSON answer; ours asks what the provider's wholeAnswers says (here: ${settings.wholeAnswers}; compare the upstream's µs/call).`,
      `Load average at start ${loadStart.map(f).join(" ")}, at end ${loadavg().map(f).join(" ")}.`,
    ].join(" "),
  );
  if (problems.length) console.log(`\nPROBLEMS:\n${problems.map((p) => `- ${p}`).join("\n")}`);
  else console.log("\nno errors: every call of every run answered in full (h2load: 2xx and whole gRPC answers; light client: whole, successful answers).");
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(`bench:openai failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
