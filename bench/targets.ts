// The speed targets of issue #6 as rows: each of our figures against its
// baseline, measured in the same session, compared the way the target is stated.
// The phases that measure them: bench/grpc-client.ts (streaming),
// bench/token-latency.ts, bench/idle-streams.ts, bench/openai-phase.ts.
import type { StreamRun } from "./grpc-client.ts";
import type { H2loadRun } from "./h2load.ts";
import type { IdleStreamsRun } from "./idle-streams.ts";
import type { OpenAIPhaseResult } from "./openai-phase.ts";
import { median, type TargetRow } from "./report.ts";
import type { TokenLatencyRun } from "./token-latency.ts";

export interface TargetInputs {
  bare: string;
  ours: string;
  streams: readonly StreamRun[];
  streamWords: number;
  throughput: readonly H2loadRun[];
  /** The h2load shape of the openai phase; the bare server's CPU per call is taken at the same. */
  shape: { connections: number; streams: number };
  tokens: readonly TokenLatencyRun[];
  idle: readonly IdleStreamsRun[];
  openai: OpenAIPhaseResult;
}

export function targetRows(x: TargetInputs): TargetRow[] {
  const rows: TargetRow[] = [];
  // Unary calls/s at 64 in flight (h2load, each shape), medians over runs.
  const calls = (n: string, c: number) => median(x.throughput.filter((r) => r.server === n && r.connections === c && r.streams === 64).map((r) => r.reqPerSec));
  const callsRow = (server: string, label: string, min: number) => {
    for (const c of [...new Set(x.throughput.map((r) => r.connections))]) {
      const [baseline, ours] = [calls(x.bare, c), calls(server, c)];
      if (!ours) continue;
      rows.push({
        metric: `Execute calls/s, ${label}, h2load -c ${c} -m 64`,
        baselineName: "bare grpc-js",
        baseline,
        ours,
        compare: "ratio",
        unit: "calls/s",
        target: `≥ ${min}x`,
        met: ours / baseline >= min,
      });
    }
  };
  callsRow(x.ours, "logging + validation, tracing off", 0.5);
  callsRow("ours-full-traced", "full suite, every call traced and exported", 0.3);
  const stream = (n: string) => x.streams.find((r) => r.server === n)!.msgsPerSec;
  const streamRatio = stream(x.ours) / stream(x.bare);
  rows.push({
    metric: `ExecuteStream msgs/s, one long stream (${x.streamWords} words)`,
    baselineName: "bare grpc-js",
    baseline: stream(x.bare),
    ours: stream(x.ours),
    compare: "ratio",
    unit: "msgs/s",
    target: "≥ 0.8x",
    met: streamRatio >= 0.8,
  });

  // Medians over the runs of each percentile; the target is on the difference at p99.
  const tok = (n: string, pick: (r: TokenLatencyRun) => number) => median(x.tokens.filter((r) => r.server === n).map(pick));
  const tokenRow = (label: string, pick: (r: TokenLatencyRun) => number, target?: string): void => {
    const [baseline, ours] = [tok(x.bare, pick), tok(x.ours, pick)];
    rows.push({
      metric: `token → client ${label}, ms`,
      baselineName: "bare grpc-js",
      baseline,
      ours,
      compare: "difference",
      unit: "ms",
      ...(target ? { target, met: ours - baseline < 1 } : {}),
    });
  };
  tokenRow("p50 from the token's due time", (r) => r.fromDue.p50Ms);
  tokenRow("p99 from the token's due time", (r) => r.fromDue.p99Ms, "adds < 1 ms");
  tokenRow("p50 from its hand-off", (r) => r.fromSent.p50Ms);
  tokenRow("p99 from its hand-off", (r) => r.fromSent.p99Ms);

  const [idleBare, idleOurs] = [x.idle.find((r) => r.server.startsWith("bare"))!, x.idle.find((r) => !r.server.startsWith("bare"))!];
  rows.push({
    metric: `server RSS per idle ExecuteStream, KiB (${idleOurs.streams.toLocaleString("en-US")} open over ${idleOurs.connections} connections)`,
    baselineName: "bare grpc-js",
    baseline: idleBare.perStreamKiB,
    ours: idleOurs.perStreamKiB,
    compare: "ratio",
    unit: "KiB",
    target: "< 40 KiB",
    met: idleOurs.perStreamKiB < 40,
  });

  const { connections: c, streams: m } = x.shape;
  const bareCpu = median(x.throughput.filter((r) => r.server === x.bare && r.connections === c && r.streams === m).map((r) => r.cpuMicrosPerCall));
  const openaiCpu = median(x.openai.throughput.map((r) => r.cpuMicrosPerCall));
  rows.push({
    metric: `openai provider: server CPU µs/call (Execute, h2load -c ${c} -m ${m}, upstream chunks ${x.openai.chunkGapMs} ms apart)`,
    baselineName: "bare grpc-js, echo",
    baseline: bareCpu,
    ours: openaiCpu,
    compare: "ratio",
    unit: "µs",
    target: "≤ 150 µs",
    met: openaiCpu <= 150,
  });
  // Context: what the openai path costs over the echo provider, through the same server and pipeline.
  const oursEcho = (pick: (r: H2loadRun) => number) =>
    median(x.throughput.filter((r) => r.server === x.ours && r.connections === c && r.streams === m).map(pick));
  rows.push({
    metric: "openai provider: server CPU µs/call over the echo provider",
    baselineName: "ours, echo",
    baseline: oursEcho((r) => r.cpuMicrosPerCall),
    ours: openaiCpu,
    compare: "difference",
    unit: "µs",
  });
  rows.push({
    metric: "openai provider: Execute calls/s (same h2load)",
    baselineName: "ours, echo",
    baseline: oursEcho((r) => r.reqPerSec),
    ours: median(x.openai.throughput.map((r) => r.reqPerSec)),
    compare: "ratio",
    unit: "calls/s",
  });
  const { direct, ours } = x.openai.ttft;
  rows.push({
    metric: "openai provider: time to first token p50, ms",
    baselineName: "upstream direct",
    baseline: direct.p50Ms,
    ours: ours.p50Ms,
    compare: "difference",
    unit: "ms",
    target: "adds < 1 ms",
    met: ours.p50Ms - direct.p50Ms < 1,
  });
  rows.push({
    metric: "openai provider: time to first token p99, ms",
    baselineName: "upstream direct",
    baseline: direct.p99Ms,
    ours: ours.p99Ms,
    compare: "difference",
    unit: "ms",
  });
  return rows;
}
