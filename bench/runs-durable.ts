// Issue #17's second speed row: a five-step run with three tool calls started
// with StartRun (attached, journaled in PostgreSQL) against the same task
// through ExecuteStream on the same server (no journal), one call at a time,
// the two kinds alternating and the first of each pair swapped every round.
// Wall time from the call to its last message, and the server's PostgreSQL
// round trips during each call (bench/runs-pg-count.ts), by statement.
import { client } from "./grpc-client.ts";
import { median } from "./report.ts";
import { executeStream, seqProblem, startRun } from "./runs-client.ts";
import { countsBetween, roundTrips, RUNNER, type CountedServer, type NamedCounts } from "./runs-setup.ts";
import { percentile } from "./grpc-client.ts";

/** Three steps each calling bench_const, an answer that is not JSON, the repair step's JSON: 5 steps, 3 tool calls. */
export function fiveStepTask(task: string): string {
  return ["!call bench_const {}", "!step", "!call bench_const {}", "!step", "!call bench_const {}", "!answer not JSON yet", '!answer {"ok": true}', task].join(
    "\n",
  );
}

export interface DurableResult {
  rounds: number;
  /** Wall ms per call, in round order. */
  startRunMs: number[];
  executeStreamMs: number[];
  /** Per StartRun: the server's PostgreSQL round trips during it, by statement. */
  startRunCounts: NamedCounts[];
  /** Per ExecuteStream, the same (a run that is not durable should make none). */
  executeStreamCounts: NamedCounts[];
  /** A completed run of the measured kind, whose journal the journal-cost row replays. */
  sampleRunId: string;
  /** StartRun streams (warm-up included) whose seqs were not 1, 2, 3, ... to the end, and the first such. */
  gaps: number;
  streams: number;
  firstGap?: string;
}

const pct = (xs: readonly number[], p: number) => percentile(Float64Array.from(xs).sort(), p);

/** Summary figures of the phase's raw numbers. */
export function durableSummary(r: DurableResult) {
  const perRun = (counts: NamedCounts[], name?: string) => median(counts.map((c) => (name ? (c[name]?.n ?? 0) : roundTrips(c))));
  const diffs = r.startRunMs.map((ms, i) => ms - r.executeStreamMs[i]!);
  return {
    executeStream: { p50: pct(r.executeStreamMs, 50), p99: pct(r.executeStreamMs, 99) },
    startRun: { p50: pct(r.startRunMs, 50), p99: pct(r.startRunMs, 99) },
    /** Median of each round's StartRun minus its ExecuteStream. */
    addedMs: median(diffs),
    roundTripsPerRun: perRun(r.startRunCounts),
    appendsPerRun: perRun(r.startRunCounts, "runs.append"),
    createsPerRun: perRun(r.startRunCounts, "runs.create"),
    journalReadsPerRun: perRun(r.startRunCounts, "runs.events"),
    executeStreamRoundTrips: perRun(r.executeStreamCounts),
    /** Server-side ms a run waits on its journal statements (sum of their round trips, median over runs). */
    journalMsPerRun: median(r.startRunCounts.map((c) => Object.entries(c).reduce((s, [n, v]) => s + (n.startsWith("runs.") ? v.ms : 0), 0))),
    /** The server's own time per append (query to answer, in its pool), median over runs of each run's mean. */
    serverAppendMs: median(r.startRunCounts.map((c) => (c["runs.append"] ? c["runs.append"].ms / c["runs.append"].n : NaN))),
    /** Every statement seen in StartRun calls: median count per run. */
    statements: Object.fromEntries([...new Set(r.startRunCounts.flatMap((c) => Object.keys(c)))].map((n) => [n, perRun(r.startRunCounts, n)])),
  };
}

export async function durablePhase(server: CountedServer, schema: string, task: string, rounds: number, problems: string[]): Promise<DurableResult> {
  const c = client(server.port);
  const run = fiveStepTask(task);
  const out: DurableResult = { rounds, startRunMs: [], executeStreamMs: [], startRunCounts: [], executeStreamCounts: [], sampleRunId: "", gaps: 0, streams: 0 };
  const check = (what: string, steps: number, calls: number, success: boolean) => {
    if (!success || steps !== 5 || calls !== 3)
      problems.push(`runs: ${what} answered success=${success} with ${steps} steps and ${calls} tool calls, expected 5 and 3`);
  };
  const durable = async (record: boolean) => {
    const before = await server.counts();
    const { events, ms } = await startRun(c, RUNNER, run);
    const counts = countsBetween(schema, before, await server.counts());
    const last = events.at(-1);
    const result = last?.event.case === "completed" ? last.event.value : undefined;
    check("StartRun", result?.steps ?? 0, result?.toolCalls.length ?? 0, result?.success ?? false);
    const gap = seqProblem(
      "StartRun stream",
      events.map((e) => Number(e.seq)),
      true,
      1,
    );
    out.streams++;
    if (gap) {
      out.gaps++;
      out.firstGap ??= gap;
    }
    out.sampleRunId ||= last?.runId ?? "";
    if (record) {
      out.startRunMs.push(ms);
      out.startRunCounts.push(counts);
    }
  };
  const plain = async (record: boolean) => {
    const before = await server.counts();
    const { result, ms } = await executeStream(c, RUNNER, run);
    const counts = countsBetween(schema, before, await server.counts());
    check("ExecuteStream", result?.steps ?? 0, result?.toolCalls.length ?? 0, result?.success ?? false);
    if (record) {
      out.executeStreamMs.push(ms);
      out.executeStreamCounts.push(counts);
    }
  };
  try {
    // Unmeasured: the first calls pay for JIT, the pool's connections and the MCP fixture's start.
    for (let i = 0; i < 8; i++) {
      await durable(false);
      await plain(false);
    }
    for (let round = 0; round < rounds; round++) {
      if (round % 2) {
        await plain(true);
        await durable(true);
      } else {
        await durable(true);
        await plain(true);
      }
    }
    // The attached caller must see every event of its run once, in order, text deltas included.
    if (out.gaps) problems.push(`runs: ${out.gaps} of ${out.streams} attached StartRun streams skipped events (first: ${out.firstGap})`);
    return out;
  } finally {
    c.close();
  }
}
