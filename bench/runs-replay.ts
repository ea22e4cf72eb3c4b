// Issue #17's third speed row: WatchRun replaying a run of ~1,000 journaled
// events from seq 0. The sources: the live log of the replica running it
// (while it waits in a slow tool), the journal read by that replica, the
// run's Redis feed read by a second server process (every event, text deltas
// too), and both replicas again after the run has ended (a finished run's live
// log is gone: the owner reads the journal, the second replica the feed). Events/s = events received / time from the call
// to the target event. Each source `repeats` times, the sources interleaved.
import type pg from "pg";
import pino from "pino";
import { PostgresRunStore } from "../src/runs/postgres-store.ts";
import type { SequencedEvent } from "../src/runs/types.ts";
import { client } from "./grpc-client.ts";
import { median } from "./report.ts";
import { cancelRun, seqProblem, startRun, watchRun } from "./runs-client.ts";
import { LONG, SLOW_TOOL, type CountedServer } from "./runs-setup.ts";

/** How each watch source is asked. */
export const SOURCES = [
  "owner live log (after_seq 1)",
  "owner, live run, from 0",
  "second replica (Redis feed), live run, from 0",
  "owner, ended run",
  "second replica (Redis feed), ended run",
] as const;
export type Source = (typeof SOURCES)[number];

export interface ReplayResult {
  /** The run's events: journaled, and all (text deltas and tool-call deltas too). */
  journaled: number;
  lastSeq: number;
  toolSteps: number;
  /** Per source, each repeat's events received and wall ms. */
  watches: Record<Source, { events: number; ms: number }[]>;
}

/** The long run's task: `steps` steps each calling bench_const, then one waiting in the MCP fixture's slow tool (it is cancelled). */
const longTask = (steps: number) =>
  [...Array.from({ length: steps }, () => "!call bench_const {}\n!step"), `!call ${SLOW_TOOL} {"ms": 50000, "progress": false}`, "done"].join("\n");

/** Journaled events per tool step, from a journal of one: those of step 1. */
export const eventsPerToolStep = (journal: readonly SequencedEvent[]): number => journal.filter((e) => (e.event as { step?: number }).step === 1).length;

export async function replayPhase(
  owner: CountedServer,
  other: CountedServer,
  pool: pg.Pool,
  schema: string,
  o: { targetEvents: number; perToolStep: number; repeats: number; problems: string[] },
): Promise<ReplayResult> {
  const store = new PostgresRunStore(pool, { schema, log: pino({ level: "warn" }) });
  // accepted, started, the slow step, the cancel: the rest are tool steps.
  const toolSteps = Math.max(1, Math.round((o.targetEvents - 3) / o.perToolStep) - 1);
  const [a, b] = [client(owner.port), client(other.port)];
  const watches = Object.fromEntries(SOURCES.map((s) => [s, []])) as unknown as ReplayResult["watches"];
  try {
    const { events } = await startRun(a, LONG, longTask(toolSteps), true);
    const runId = events[0]?.runId;
    if (!runId) throw new Error("runs: a background StartRun answered no run id");
    // Followed on the owner until the run sits in the slow tool; then nothing more comes until it is cancelled.
    await watchRun(a, runId, 0, (e) => e.event.case === "toolCall" && e.event.value.call?.name === SLOW_TOOL);
    let journal: SequencedEvent[] = [];
    let lastSeq = -1;
    for (;;) {
      await new Promise((r) => setTimeout(r, 200));
      const run = await store.get(runId);
      const now = await store.events(runId, 0, 100_000);
      if (run?.lastSeq === lastSeq && now.length === journal.length) break;
      [lastSeq, journal] = [run?.lastSeq ?? 0, now];
    }
    const lastJournaled = journal.at(-1)!.seq;
    const live: [Source, () => ReturnType<typeof watchRun>, (seqs: number[]) => string | undefined][] = [
      [SOURCES[0], () => watchRun(a, runId, 1, lastSeq), (s) => seqProblem(SOURCES[0], s, true, 2)],
      [SOURCES[1], () => watchRun(a, runId, 0, lastJournaled), (s) => seqProblem(SOURCES[1], s, false, 1)],
      [SOURCES[2], () => watchRun(b, runId, 0, lastJournaled), (s) => seqProblem(SOURCES[2], s, false, 1)],
    ];
    await measure(live, o.repeats, watches, o.problems);
    await cancelRun(a, runId);
    const ended: typeof live = [
      [SOURCES[3], () => watchRun(a, runId, 0), (s) => seqProblem(SOURCES[3], s, false, 1)],
      [SOURCES[4], () => watchRun(b, runId, 0), (s) => seqProblem(SOURCES[4], s, false, 1)],
    ];
    await measure(ended, o.repeats, watches, o.problems);
    return { journaled: journal.length, lastSeq, toolSteps, watches };
  } finally {
    a.close();
    b.close();
  }
}

/** One unmeasured watch of each source, then `repeats` rounds of all of them, the order rotated each round. */
async function measure(
  sources: [Source, () => ReturnType<typeof watchRun>, (seqs: number[]) => string | undefined][],
  repeats: number,
  out: ReplayResult["watches"],
  problems: string[],
): Promise<void> {
  for (const [, watch] of sources) await watch();
  for (let round = 0; round < repeats; round++) {
    for (let i = 0; i < sources.length; i++) {
      const [source, watch, check] = sources[(i + round) % sources.length]!;
      const { seqs, ms } = await watch();
      const problem = check(seqs);
      if (problem && !problems.includes(problem)) problems.push(`runs replay: ${problem}`);
      out[source].push({ events: seqs.length, ms });
    }
  }
}

/** Median events/s and events per watch, per source. */
export function replaySummary(r: ReplayResult): Record<Source, { eventsPerSec: number; events: number; ms: number }> {
  return Object.fromEntries(
    SOURCES.map((s) => {
      const runs = r.watches[s];
      return [
        s,
        { eventsPerSec: median(runs.map((w) => (w.events * 1000) / w.ms)), events: median(runs.map((w) => w.events)), ms: median(runs.map((w) => w.ms)) },
      ];
    }),
  ) as Record<Source, { eventsPerSec: number; events: number; ms: number }>;
}
