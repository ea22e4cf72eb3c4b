// What bench/openai-real.ts prints: medians over rounds per cell, each of ours
// against direct from the same rounds, and issue #18's targets.
import type { AlternateResult, LoopResult, Summary } from "./light-client.ts";
import type { H2loadCell } from "./openai-real-h2load.ts";
import { median } from "./report.ts";

export type Port = "grpc" | "connect";
export type Answer = "unary" | "stream";

/** One point of the matrix: which port (and so which load generator), answer form, size, concurrency. */
export interface Cell {
  port: Port;
  answer: Answer;
  tokens: number;
  inFlight: number;
}

/** One measured run of one side of a cell. */
export interface Measured {
  round: number;
  side: "direct" | "ours";
  cell: Cell;
  run: LoopResult | H2loadCell;
}

/** Medians over rounds of one side of a cell. */
export interface SideSummary {
  rounds: number;
  errors: number;
  reqPerSec: number;
  /** CPU µs per call: server (ours only), upstream, client (the load generator). */
  cpuPerCall: Record<string, number>;
  /** CPU over wall time, in cores, per process. */
  cores: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
}

export interface CellSummary {
  cell: Cell;
  direct: SideSummary;
  ours: SideSummary;
}

const PROCS = ["server", "upstream", "client"] as const;

function side(runs: readonly Measured[]): SideSummary {
  const m = (pick: (r: Measured["run"]) => number) => median(runs.map((x) => pick(x.run)));
  const per = (k: string, by: (r: Measured["run"]) => number) => m((r) => (k in r.cpuMicros ? r.cpuMicros[k]! / by(r) : NaN));
  const ttft = (pick: (s: Summary) => number) => m((r) => ("ttftMs" in r && r.ttftMs ? pick(r.ttftMs) : NaN));
  return {
    rounds: runs.length,
    errors: runs.reduce((n, x) => n + x.run.errors, 0),
    reqPerSec: m((r) => r.reqPerSec),
    cpuPerCall: Object.fromEntries(PROCS.map((k) => [k, per(k, (r) => r.calls)])),
    cores: Object.fromEntries(PROCS.map((k) => [k, per(k, (r) => r.windowMicros)])),
    p50Ms: m((r) => r.latencyMs.p50),
    p99Ms: m((r) => r.latencyMs.p99),
    ttftP50Ms: ttft((s) => s.p50),
    ttftP99Ms: ttft((s) => s.p99),
  };
}

const same = (a: Cell, b: Cell) => a.port === b.port && a.answer === b.answer && a.tokens === b.tokens && a.inFlight === b.inFlight;

export function summarise(cells: readonly Cell[], measured: readonly Measured[]): CellSummary[] {
  return cells.map((cell) => {
    const of = (s: Measured["side"]) => measured.filter((x) => x.side === s && same(x.cell, cell));
    return { cell, direct: side(of("direct")), ours: side(of("ours")) };
  });
}

export const fmt = (x: number): string => {
  if (!Number.isFinite(x)) return "n/a";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
};
const signed = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? "+" : "−"}${fmt(Math.abs(x))}` : "n/a");
const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : "n/a");
const GENERATOR: Record<Port, string> = { grpc: "gRPC, h2load", connect: "Connect, light" };
const label = (c: Cell) => `| ${GENERATOR[c.port]} | ${c.answer === "unary" ? "Execute" : "ExecuteStream"} | ${c.tokens} | ${c.inFlight} |`;
const added = (direct: number, ours: number) => `${signed(ours - direct)} (${ratio(ours, direct)})`;

function markdown(head: readonly string[], rows: readonly string[]): string {
  return [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows].join("\n");
}

/** req/s and CPU per call, ours against direct. */
export function throughputTable(s: readonly CellSummary[]): string {
  const head = ["port, load generator", "answer", "tokens", "in flight", "req/s direct", "req/s ours", "ours / direct"];
  head.push("server µs/call", "upstream µs/call direct / ours", "load-gen µs/call direct / ours");
  head.push("cores busy direct: upstream + load-gen", "cores busy ours: server + upstream + load-gen");
  return markdown(
    head,
    s.map(({ cell, direct: d, ours: o }) => {
      const cols = [fmt(d.reqPerSec), fmt(o.reqPerSec), ratio(o.reqPerSec, d.reqPerSec), fmt(o.cpuPerCall.server!)];
      cols.push(`${fmt(d.cpuPerCall.upstream!)} / ${fmt(o.cpuPerCall.upstream!)}`, `${fmt(d.cpuPerCall.client!)} / ${fmt(o.cpuPerCall.client!)}`);
      cols.push(`${fmt(d.cores.upstream!)} + ${fmt(d.cores.client!)}`, `${fmt(o.cores.server!)} + ${fmt(o.cores.upstream!)} + ${fmt(o.cores.client!)}`);
      return `${label(cell)} ${cols.join(" | ")} |`;
    }),
  );
}

/** Latency and time to first token, ours minus direct. */
export function latencyTable(s: readonly CellSummary[]): string {
  const head = [
    "port, load generator",
    "answer",
    "tokens",
    "in flight",
    "p50 ms direct / ours",
    "added p50 (ratio)",
    "p99 ms direct / ours",
    "added p99 (ratio)",
  ];
  head.push("TTFT p50 direct / ours (added)", "TTFT p99 direct / ours (added)");
  return markdown(
    head,
    s.map(({ cell, direct: d, ours: o }) => {
      const ttft = (a: number, b: number) => (Number.isFinite(b) ? `${fmt(a)} / ${fmt(b)} (${signed(b - a)})` : "");
      const cols = [`${fmt(d.p50Ms)} / ${fmt(o.p50Ms)}`, added(d.p50Ms, o.p50Ms), `${fmt(d.p99Ms)} / ${fmt(o.p99Ms)}`, added(d.p99Ms, o.p99Ms)];
      cols.push(ttft(d.ttftP50Ms, o.ttftP50Ms), ttft(d.ttftP99Ms, o.ttftP99Ms));
      return `${label(cell)} ${cols.join(" | ")} |`;
    }),
  );
}

/** Percentiles of the samples an alternation pooled, per target. */
export function pooled(r: AlternateResult, pick: "ttftMs" | "tokenLatencyMs" | "tokenGapMs"): Record<string, Summary> {
  return Object.fromEntries(
    Object.entries(r.byTarget).map(([name, t]) => {
      const s = Float64Array.from(t[pick]).sort();
      const at = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN);
      return [name, { n: s.length, p50: at(50), p99: at(99) }];
    }),
  );
}

/** One of issue #18's targets: our figure against direct (or against the gRPC port), as the target is stated. */
export interface TargetRow {
  metric: string;
  baselineName: string;
  baseline: number;
  ours: number;
  compare: "ratio" | "difference" | "absolute";
  unit: string;
  target: string;
  met: boolean;
}

export function targetsTable(rows: readonly TargetRow[]): string {
  return markdown(
    ["target (issue #18)", "baseline", "ours", "ours vs baseline", "target", "met"],
    rows.map((r) => {
      const vs = r.compare === "ratio" ? ratio(r.ours, r.baseline) : r.compare === "difference" ? `${signed(r.ours - r.baseline)} ${r.unit}` : "";
      const base = Number.isFinite(r.baseline) ? `${fmt(r.baseline)} (${r.baselineName})` : r.baselineName;
      return `| ${r.metric} | ${base} | ${fmt(r.ours)} ${r.unit} | ${vs} | ${r.target} | ${r.met ? "yes" : "**no**"} |`;
    }),
  );
}

/** What the rows are computed from: the matrix, and the pooled samples of the two alternations. */
export interface TargetInputs {
  cells: readonly CellSummary[];
  /** The largest in-flight count measured (64 unless narrowed). */
  top: number;
  ttft: Record<string, Summary>;
  tokenLatency: Record<string, Summary>;
  /** The answer size of the TTFT and token rows. */
  streamTokens: number;
}

export function targetRows(x: TargetInputs): TargetRow[] {
  const rows: TargetRow[] = [];
  const at = (port: Port, answer: Answer, tokens: number) =>
    x.cells.find((c) => c.cell.port === port && c.cell.answer === answer && c.cell.tokens === tokens && c.cell.inFlight === x.top);
  for (const tokens of [...new Set(x.cells.map((c) => c.cell.tokens))]) {
    const u = at("grpc", "unary", tokens);
    if (u) {
      const where = `unary Execute, gRPC port via h2load, ${x.top} in flight, ${tokens} tokens`;
      const cpu = u.ours.cpuPerCall.server!;
      rows.push({
        metric: `${where}: server CPU per call`,
        baselineName: "—",
        baseline: NaN,
        ours: cpu,
        compare: "absolute",
        unit: "µs",
        target: "≤ 250 µs",
        met: cpu <= 250,
      });
      rows.push({
        metric: `${where}: req/s`,
        baselineName: `mock via h2load --h1 -c ${x.top}`,
        baseline: u.direct.reqPerSec,
        ours: u.ours.reqPerSec,
        compare: "ratio",
        unit: "req/s",
        target: "≥ 0.2x",
        met: u.ours.reqPerSec >= 0.2 * u.direct.reqPerSec,
      });
    }
    const [grpc, connect] = [at("grpc", "stream", tokens), at("connect", "stream", tokens)];
    if (grpc && connect) {
      const [g, c] = [grpc.ours.cpuPerCall.server!, connect.ours.cpuPerCall.server!];
      rows.push({
        metric: `ExecuteStream server CPU per call, Connect port vs gRPC port, ${x.top} in flight, ${tokens} tokens`,
        baselineName: "gRPC port",
        baseline: g,
        ours: c,
        compare: "ratio",
        unit: "µs",
        target: "≤ 1.3x",
        met: c <= 1.3 * g,
      });
    }
  }
  const direct = (r: Record<string, Summary>) => r.direct!;
  const diff = (metric: string, base: number, ours: number, limit: number) =>
    rows.push({
      metric,
      baselineName: "direct",
      baseline: base,
      ours,
      compare: "difference",
      unit: "ms",
      target: `adds < ${limit} ms`,
      met: ours - base < limit,
    });
  const GEN: Record<string, string> = { connect: "Connect streaming", sse: "SSE", grpc: "gRPC (node:http2)" };
  for (const name of Object.keys(x.ttft).filter((n) => n !== "direct")) {
    const what = `streamed ${x.streamTokens} tokens, ${GEN[name] ?? name}, 1 in flight, light client: added TTFT`;
    diff(`${what} p50`, direct(x.ttft).p50, x.ttft[name]!.p50, 1);
    diff(`${what} p99`, direct(x.ttft).p99, x.ttft[name]!.p99, 3);
  }
  for (const name of Object.keys(x.tokenLatency).filter((n) => n !== "direct")) {
    const what = `token → client p99 (upstream write to client read), ${GEN[name] ?? name}, a token a ms`;
    diff(what, direct(x.tokenLatency).p99, x.tokenLatency[name]!.p99, 1);
  }
  return rows;
}
