// The runs phase: issue #17's speed rows, each against its baseline in the
// same run, on the machine's PostgreSQL in a schema of the phase's own.
// Two servers (runs and sessions in that schema, round trips counted by
// bench/runs-pg-count.ts): (2) bench/runs-durable.ts, a five-step run with
// three tool calls, StartRun against ExecuteStream; (1) bench/runs-journal.ts,
// that run's journal replayed in this process, appends against a committed
// INSERT; (3) bench/runs-replay.ts, WatchRun of a ~1,000-event run from each
// source there is. Run by `npm run bench` last, and alone by `npm run bench:runs`.
import pg from "pg";
import pino from "pino";
import { PostgresRunStore } from "../src/runs/postgres-store.ts";
import { stop } from "./children.ts";
import { durablePhase, durableSummary, type DurableResult } from "./runs-durable.ts";
import { journalCost, journalSummary, type JournalResult } from "./runs-journal.ts";
import { eventsPerToolStep, replayPhase, replaySummary, SOURCES, type ReplayResult } from "./runs-replay.ts";
import { benchSchema, databaseUrl, runsConfig, startCounted } from "./runs-setup.ts";

export interface RunsSettings {
  task: string;
  /** Rounds of StartRun + ExecuteStream. */
  rounds: number;
  /** Replays of the five-step journal. */
  replays: number;
  /** Watches per source. */
  repeats: number;
  /** Journaled events of the replay run. */
  replayEvents: number;
  /** A directory: the owner server runs with --cpu-prof into it. */
  cpuProfDir?: string;
}

export interface RunsPhaseResult {
  durable: DurableResult;
  journal: JournalResult;
  replay: ReplayResult;
}

/** One row of the issue #17 table, compared the way the target is stated. */
export interface RunTargetRow {
  metric: string;
  baseline: string;
  ours: string;
  versus: string;
  target?: string;
  met?: boolean;
}

/** The phase's settings from the environment. */
export function runsSettings(task: string): RunsSettings {
  const int = (name: string, fallback: number) => {
    const raw = process.env[name];
    if (raw === undefined || raw === "") return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`${name}: expected a positive integer, got "${raw}"`);
    return Number(raw);
  };
  const prof = process.env.BENCH_RUNS_CPU_PROF;
  return {
    task,
    rounds: int("BENCH_RUNS_ROUNDS", 100),
    replays: int("BENCH_RUNS_REPLAYS", 30),
    repeats: int("BENCH_RUNS_REPEATS", 9),
    replayEvents: 1000,
    ...(prof ? { cpuProfDir: prof } : {}),
  };
}

export async function runsPhase(o: RunsSettings & { log: (line: string) => void; problems: string[] }): Promise<RunsPhaseResult> {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 10 });
  const { schema, drop } = await benchSchema(pool);
  try {
    const config = runsConfig(schema);
    // One after the other: both migrate the schema at start (safe together, but the second would only wait).
    const owner = await startCounted("ours-runs", config, o.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${o.cpuProfDir}`] : []);
    const other = await startCounted("ours-runs-2", config);
    try {
      const durable = await durablePhase(owner, schema, o.task, o.rounds, o.problems);
      const d = durableSummary(durable);
      o.log(
        `  runs five-step: ExecuteStream p50 ${d.executeStream.p50.toFixed(2)} p99 ${d.executeStream.p99.toFixed(2)} ms; StartRun p50 ${d.startRun.p50.toFixed(2)} p99 ${d.startRun.p99.toFixed(2)} ms; +${d.addedMs.toFixed(2)} ms per run (median of pairs); ${d.roundTripsPerRun} round trips per run`,
      );
      const journal = await journalCost(pool, schema, durable.sampleRunId, o.replays);
      const j = journalSummary(journal);
      o.log(
        `  runs journal: append p50 ${j.appendMs.p50.toFixed(3)} ms, INSERT p50 ${j.insertMs.p50.toFixed(3)} ms; tool step ${j.toolStep.appends} appends ${j.toolStep.ms.toFixed(2)} ms; text step ${j.textStep.appends} appends; final step ${j.finalStep.appends} appends`,
      );
      const sample = await new PostgresRunStore(pool, { schema, log: pino({ level: "warn" }) }).events(durable.sampleRunId, 0, 10_000);
      const replay = await replayPhase(owner, other, pool, schema, {
        targetEvents: o.replayEvents,
        perToolStep: eventsPerToolStep(sample),
        repeats: o.repeats,
        problems: o.problems,
      });
      const r = replaySummary(replay);
      for (const s of SOURCES)
        o.log(`  runs replay ${s.padEnd(34)} ${r[s].eventsPerSec.toFixed(0).padStart(7)} events/s (${r[s].events} events, ${r[s].ms.toFixed(1)} ms)`);
      return { durable, journal, replay };
    } finally {
      await Promise.all([stop(owner.child), stop(other.child)]);
      if (o.cpuProfDir) o.log(`  runs: the owner server's CPU profile is in ${o.cpuProfDir}`);
    }
  } finally {
    await drop().catch((err: unknown) => o.problems.push(`runs: could not drop schema ${schema}: ${(err as Error).message}`));
    await pool.end();
  }
}

const fixed = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : "n/a");

/** The rows of issue #17's speed section, with context rows (no target). */
export function runTargetRows(r: RunsPhaseResult): RunTargetRow[] {
  const j = journalSummary(r.journal);
  const d = durableSummary(r.durable);
  const p = replaySummary(r.replay);
  const insert = `committed 1-row INSERT p50 ${fixed(j.insertMs.p50, 3)} ms`;
  const rows: RunTargetRow[] = [];
  rows.push({
    metric: "journal: round trips per append (PostgreSQL, in process, pool.query counted)",
    baseline: "",
    ours: fixed(j.roundTripsPerAppend, 2),
    versus: "",
    target: "≤ 1 per journal entry",
    met: j.roundTripsPerAppend <= 1,
  });
  for (const [label, s] of [
    ["tool step (1 call)", j.toolStep],
    ["text step", j.textStep],
    ["final step (text + completed)", j.finalStep],
  ] as const) {
    rows.push({
      metric: `journal: ${label}: appends = round trips [what each wrote], ms per step (p50)`,
      baseline: insert,
      ours: `${s.appends} appends, ${s.roundTrips} round trips [${s.writes.join(", ")}], ${fixed(s.ms, 2)} ms`,
      versus: `${fixed(s.ms / j.insertMs.p50, 2)}x`,
    });
  }
  rows.push({
    metric: "journal: one append, ms (p50 / mean)",
    baseline: `INSERT ${fixed(j.insertMs.p50, 3)} / ${fixed(j.insertMs.mean, 3)} ms`,
    ours: `${fixed(j.appendMs.p50, 3)} / ${fixed(j.appendMs.mean, 3)} ms`,
    versus: `${fixed(j.appendMs.p50 / j.insertMs.p50, 2)}x`,
  });
  rows.push({
    metric: `five-step run, 3 tool calls (echo, bench_const): wall ms p50 / p99 over ${r.durable.rounds} runs each, interleaved`,
    baseline: `ExecuteStream (no journal): ${fixed(d.executeStream.p50, 2)} / ${fixed(d.executeStream.p99, 2)} ms`,
    ours: `StartRun attached (PostgreSQL journal): ${fixed(d.startRun.p50, 2)} / ${fixed(d.startRun.p99, 2)} ms`,
    versus: `+${fixed(d.startRun.p50 - d.executeStream.p50, 2)} / +${fixed(d.startRun.p99 - d.executeStream.p99, 2)} ms (paired median +${fixed(d.addedMs, 2)} ms)`,
  });
  const statements = Object.entries(d.statements)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name.replace(/^runs\./, "")} ${n}`)
    .join(", ");
  rows.push({
    metric: "five-step run: the server's PostgreSQL round trips per run (median) [by statement]; ms the run waited on them",
    baseline: `ExecuteStream: ${d.executeStreamRoundTrips}`,
    ours: `${d.roundTripsPerRun} [${statements}]; ${fixed(d.journalMsPerRun, 2)} ms (an append ${fixed(d.serverAppendMs, 2)} ms)`,
    versus: `journal writes (create + appends) ${d.createsPerRun + d.appendsPerRun} for ${r.journal.journal.length} journaled events: ${fixed((d.createsPerRun + d.appendsPerRun) / r.journal.journal.length, 2)} per entry`,
  });
  const base = p[SOURCES[0]];
  for (const s of SOURCES) {
    rows.push({
      metric: `WatchRun replay of a ${r.replay.journaled}-event run (${r.replay.lastSeq} with deltas): ${s}, events/s (median of ${r.replay.watches[s].length})`,
      baseline: s === SOURCES[0] ? "" : `owner live log: ${fixed(base.eventsPerSec, 0)}`,
      ours: `${fixed(p[s].eventsPerSec, 0)} (${p[s].events} events in ${fixed(p[s].ms, 1)} ms)`,
      versus: s === SOURCES[0] ? "" : `${fixed(p[s].eventsPerSec / base.eventsPerSec, 2)}x`,
    });
  }
  return rows;
}

/** A markdown table of the rows. */
export function runTargetsTable(rows: readonly RunTargetRow[]): string {
  const lines = ["| issue #17 | baseline | ours | ours vs baseline | target | met |", "|---|---|---|---|---|---|"];
  for (const r of rows)
    lines.push(`| ${r.metric} | ${r.baseline} | ${r.ours} | ${r.versus} | ${r.target ?? ""} | ${r.met === undefined ? "" : r.met ? "yes" : "**no**"} |`);
  return lines.join("\n");
}
