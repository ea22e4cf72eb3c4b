// Issue #17's first speed row: what the PostgreSQL journal costs a step, in
// this process, on one pool. The journal of a real five-step run (made by the
// server in bench/runs-durable.ts) is replayed event by event through RunLog
// into fresh runs of PostgresRunStore, as the server's run loop pushes them;
// every append is timed, and after each one (before it, every other time) a
// committed single-row INSERT on the same pool is timed as the baseline. The
// pool's query is wrapped to count round trips.
import type { RunStore, SequencedEvent } from "../src/runs/types.ts";
import { randomUUID } from "node:crypto";
import type pg from "pg";
import pino from "pino";
import { PostgresRunStore } from "../src/runs/postgres-store.ts";
import { RunLog } from "../src/runs/run-log.ts";
import { median } from "./report.ts";
import { RUNNER } from "./runs-setup.ts";

const OWNER = "bench-journal";

/** One append: which step it was in, whether that step called tools, the events it wrote, its ms. */
interface Append {
  step: number;
  toolStep: boolean;
  events: string[];
  ms: number;
  roundTrips: number;
}

export interface JournalResult {
  replays: number;
  /** The replayed run's journaled event types, in order. */
  journal: string[];
  appends: Append[];
  insertMs: number[];
}

/** Replays `runId`'s journal `replays` times; `pool` must reach `schema`, migrated by a server. */
export async function journalCost(pool: pg.Pool, schema: string, runId: string, replays: number): Promise<JournalResult> {
  const store = await PostgresRunStore.open(pool, { schema, log: pino({ level: "warn" }) });
  const journal = await store.events(runId, 0, 10_000);
  if (!journal.length) throw new Error(`runs: run ${runId} has no journal in ${schema}`);
  const events = journal.map((e) => e.event).filter((e) => e.type !== "accepted");
  // Steps that called tools, by number: the step_finished event says how many calls it made.
  const toolSteps = new Set(events.flatMap((e) => (e.type === "step_finished" && e.toolCalls > 0 ? [e.step] : [])));

  let queries = 0;
  const query = pool.query.bind(pool) as (...a: unknown[]) => unknown;
  (pool as unknown as { query: unknown }).query = (...a: unknown[]) => {
    queries++;
    return query(...a);
  };
  const out: JournalResult = { replays, journal: journal.map((e) => e.event.type), appends: [], insertMs: [] };
  await pool.query(`create table ${schema}.bench_raw_writes (id bigserial primary key, body text)`);
  const insert = async () => {
    const t0 = performance.now();
    await pool.query(`insert into ${schema}.bench_raw_writes (body) values ($1)`, ["x"]);
    out.insertMs.push(performance.now() - t0);
  };
  let step = 0;
  let count = 0;
  // RunLog's store: PostgresRunStore with each append timed and the baseline INSERT next to it.
  const timed: RunStore = Object.create(store, {
    append: {
      value: async (...args: Parameters<RunStore["append"]>) => {
        const first = count++ % 2 === 1;
        if (first) await insert();
        const q0 = queries;
        const t0 = performance.now();
        await store.append(...args);
        out.appends.push({
          step,
          toolStep: toolSteps.has(step),
          events: (args[3] as readonly SequencedEvent[]).map((e) => e.event.type),
          ms: performance.now() - t0,
          roundTrips: queries - q0,
        });
        if (!first) await insert();
      },
    },
  });
  try {
    for (let i = 0; i < replays; i++) {
      const id = randomUUID();
      const input = { agentId: RUNNER, task: "bench", sessionId: "", userId: "", metadata: {}, options: {} };
      const settings = { background: false, onDisconnect: "continue" as const, onSessionBusy: "reject" as const, callerTools: [] };
      const { run } = await store.create(
        { id, userId: "", agentId: RUNNER, sessionId: "", idempotencyKey: "", status: "running", input, settings, owner: OWNER, leaseMs: 60_000 },
        [{ seq: 1, time: Date.now(), event: { type: "accepted" } }],
      );
      const log = new RunLog(id, OWNER, timed, run.lastSeq);
      step = 0;
      for (const event of events) {
        if (event.type === "step_started") step = event.step;
        // As the run manager pushes them: the completed event finishes the run and releases it.
        await log.push(event, event.type === "completed" ? { status: "completed", result: event.result, release: true } : undefined);
      }
    }
    return out;
  } finally {
    (pool as unknown as { query: unknown }).query = query;
  }
}

/** Summary figures: appends and ms per tool step and per text step, against the INSERT. */
export function journalSummary(r: JournalResult) {
  const steps = new Map<string, Append[]>();
  r.appends.forEach((a, i) => {
    const replay = Math.floor(i / (r.appends.length / r.replays));
    const key = `${replay}:${a.step}`;
    steps.set(key, [...(steps.get(key) ?? []), a]);
  });
  // A tool step; a text step that is not the last (the answer the repair step asks again); the last step, which completes the run.
  const kind = (s: Append[]) => (s[0]!.toolStep ? "tool" : s.some((a) => a.events.includes("completed")) ? "final" : "text");
  const perStep = (k: string) => {
    const of = [...steps.values()].filter((s) => kind(s) === k);
    return {
      appends: median(of.map((s) => s.length)),
      roundTrips: median(of.map((s) => s.reduce((n, a) => n + a.roundTrips, 0))),
      ms: median(of.map((s) => s.reduce((n, a) => n + a.ms, 0))),
      /** What each of its appends wrote, from the first replay. */
      writes: of[0]?.map((a) => a.events.join("+")) ?? [],
    };
  };
  return {
    appendMs: { p50: median(r.appends.map((a) => a.ms)), mean: r.appends.reduce((s, a) => s + a.ms, 0) / r.appends.length },
    insertMs: { p50: median(r.insertMs), mean: r.insertMs.reduce((s, x) => s + x, 0) / r.insertMs.length },
    roundTripsPerAppend: r.appends.reduce((s, a) => s + a.roundTrips, 0) / r.appends.length,
    appendsPerRun: r.appends.length / r.replays,
    toolStep: perStep("tool"),
    textStep: perStep("text"),
    finalStep: perStep("final"),
  };
}
