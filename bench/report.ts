// Turns raw runs into the printed table and the JSON file. Medians, because
// noise between runs on these shared VMs is ±15-40%; ratios are taken between
// servers measured in the same interleaved session, never across sessions.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export const median = (xs: readonly number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** One printed row: a metric's value per server. */
export interface Row {
  metric: string;
  /** Which direction is good, so a ratio above 1 is not misread; "neither" for context rows. */
  better: "higher" | "lower" | "neither";
  values: Record<string, number>;
}

const fmt = (x: number): string => {
  if (!Number.isFinite(x)) return "n/a";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
};

const ratio = (x: number, base: number): string => (Number.isFinite(x / base) ? `${(x / base).toFixed(2)}x` : "n/a");

/** A markdown table: every server, and each non-baseline server's ratio to the baseline. */
export function table(rows: readonly Row[], baseline: string, others: readonly string[]): string {
  const head = ["metric", baseline, ...others.flatMap((o) => [o, `${o} / ${baseline}`]), "better"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    const base = r.values[baseline]!;
    const cells = [r.metric, fmt(base), ...others.flatMap((o) => [fmt(r.values[o]!), ratio(r.values[o]!, base)]), r.better];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

/**
 * A markdown table of one server against others on the chosen rows: its
 * figure, then its ratio to each of theirs (all measured in the same run).
 */
export function versusTable(rows: readonly Row[], server: string, against: readonly string[]): string {
  const head = ["metric", server, ...against.map((a) => `${server} / ${a}`), "better"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    const ours = r.values[server]!;
    lines.push(`| ${[r.metric, fmt(ours), ...against.map((a) => ratio(ours, r.values[a]!)), r.better].join(" | ")} |`);
  }
  return lines.join("\n");
}

/**
 * One row of the speed targets of issue #6: our figure against its baseline
 * (the bare grpc-js server, or the upstream called directly), compared the way
 * the target is stated.
 */
export interface TargetRow {
  metric: string;
  /** What the baseline is, e.g. "bare grpc-js". */
  baselineName: string;
  baseline: number;
  ours: number;
  /** "ratio": ours / baseline; "difference": ours − baseline, in `unit`. */
  compare: "ratio" | "difference";
  unit: string;
  /** The target as issue #6 states it; absent on context rows. */
  target?: string;
  met?: boolean;
}

const signed = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? "+" : "−"}${fmt(Math.abs(x))}` : "n/a");

/** A markdown table of the target rows. */
export function targetsTable(rows: readonly TargetRow[]): string {
  const lines = ["| target (issue #6) | baseline | ours | ours vs baseline | target | met |", "|---|---|---|---|---|---|"];
  for (const r of rows) {
    const vs = r.compare === "ratio" ? `${(r.ours / r.baseline).toFixed(2)}x` : `${signed(r.ours - r.baseline)} ${r.unit}`;
    const met = r.met === undefined ? "" : r.met ? "yes" : "**no**";
    lines.push(`| ${r.metric} | ${fmt(r.baseline)} (${r.baselineName}) | ${fmt(r.ours)} | ${vs} | ${r.target ?? ""} | ${met} |`);
  }
  return lines.join("\n");
}

export function writeJson(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  // BigInt never appears in results, but NaN does: JSON turns it into null, which is what we want.
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}
