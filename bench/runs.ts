// `npm run bench:runs`: the runs phase of `npm run bench` alone (issue #17's
// speed rows, bench/runs-phase.ts), about 40 s. Needs the machine's PostgreSQL
// (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test); the phase
// makes a schema of its own and drops it. BENCH_RUNS_ROUNDS (default 100)
// StartRun/ExecuteStream pairs, BENCH_RUNS_REPLAYS (30) journal replays,
// BENCH_RUNS_REPEATS (9) watches per source; BENCH_RUNS_CPU_PROF=<dir>
// profiles the owner server. The servers have Redis (REDIS_URL, default
// redis://127.0.0.1:6379) for the runs' live feed; BENCH_RUNS_FEED=off runs
// them without it, to see what the feed costs. Then, in this process, WatchRun
// replay from the Redis run feed (keys of its own, deleted) against the
// journal replay of the same run. Writes bench/results/runs.json.
import type { NewRun, RunLogEvent, RunRecord } from "../src/runs/types.ts";
import { randomUUID } from "node:crypto";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import pino from "pino";
import { PostgresRunStore } from "../src/runs/postgres-store.ts";
import { RedisRunFeed } from "../src/runs/redis-feed.ts";
import { RunLog } from "../src/runs/run-log.ts";
import { watchRun } from "../src/runs/watch.ts";
import { installCleanup, root, stopAll } from "./children.ts";
import { median, writeJson } from "./report.ts";
import { runsPhase, runsSettings, runTargetRows, runTargetsTable, type RunTargetRow } from "./runs-phase.ts";
import { replaySummary, SOURCES } from "./runs-replay.ts";
import { benchSchema, databaseUrl } from "./runs-setup.ts";

const TASK = "summarise the quarterly report for the board in three short sentences";

async function main(): Promise<void> {
  installCleanup();
  const started = Date.now();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const problems: string[] = [];
  const settings = runsSettings(TASK);
  const load = { start: loadavg() };
  const result = await runsPhase({ ...settings, log, problems });
  const rows = runTargetRows(result);
  const feed = await feedReplay(settings.replayEvents, settings.repeats);
  rows.push(...feedRows(feed, replaySummary(result.replay)[SOURCES[4]].eventsPerSec));
  console.log(`\n${runTargetsTable(rows)}\n`);
  console.log(
    `load average at start ${load.start.map((x) => x.toFixed(2)).join(" ")}, at end ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")} (${cpus().length} cpus)`,
  );
  if (problems.length) console.log(`PROBLEMS:\n${problems.map((p) => `- ${p}`).join("\n")}`);
  const file = join(root, "bench/results/runs.json");
  writeJson(file, {
    date: new Date().toISOString(),
    node: process.version,
    cpus: { count: cpus().length, model: cpus()[0]?.model },
    loadavg: { ...load, end: loadavg() },
    settings,
    rows,
    problems,
    raw: result,
    feedReplay: feed,
    wallSeconds: (Date.now() - started) / 1000,
  });
  log(`bench:runs: wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

/** How the in-process replay watches: a watcher with no local log (a second replica), from seq 0. */
const FEED_SOURCES = ["feed, ended run", "feed, live run", "journal, ended run", "journal, live run"] as const;

interface FeedReplay {
  /** The runs' events (text deltas included) and how many of them the journal keeps. */
  events: number;
  journaled: number;
  watches: Record<(typeof FEED_SOURCES)[number], { events: number; ms: number }[]>;
}

/** One tool step of the runs, as the echo agent's: three text deltas, one tool call. */
const stepEvents = (step: number): RunLogEvent[] => {
  const call = { id: `call_${step}`, name: "bench_const", arguments: "{}" };
  const text = ["Looking at the ", "quarterly figures ", "first. "];
  return [
    { type: "step_started", step },
    ...text.map((t): RunLogEvent => ({ type: "delta", text: t })),
    { type: "tool_call", step, call },
    { type: "tool_result", step, record: { ...call, step, outcome: "ok", output: '{"value":42}', durationMs: 1 } },
    { type: "step_finished", step, finishReason: "tool_calls", usage: { inputTokens: 120, outputTokens: 30 }, toolCalls: 1, text: text.join("") },
  ];
};

/**
 * Two runs of `events` events pushed through RunLog into a PostgreSQL journal
 * (a schema of its own) and a RedisRunFeed: one ended (completed), one live
 * (its last event journaled, as a run waiting in a tool). Each is watched from
 * seq 0 to its last event with the feed (every event) and without (the journal:
 * no deltas), `repeats` times, the four interleaved after one unmeasured round.
 */
async function feedReplay(events: number, repeats: number): Promise<FeedReplay> {
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 });
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  const log = pino({ level: "warn" });
  const prefix = `qingyu:bench:${randomUUID()}:`;
  const feed = new RedisRunFeed(redis, log, { keyPrefix: prefix });
  const { schema, drop } = await benchSchema(pool);
  try {
    const store = await PostgresRunStore.open(pool, { schema, log });
    const make = async (ended: boolean): Promise<RunRecord> => {
      const [userId, sessionId] = [randomUUID(), randomUUID()];
      const first = [{ seq: 1, time: Date.now(), event: { type: "accepted" } as const }];
      const fresh: NewRun = {
        id: randomUUID(),
        userId,
        agentId: "long",
        sessionId,
        idempotencyKey: "",
        status: "running",
        owner: "bench",
        leaseMs: 600_000,
        input: { agentId: "long", task: "replay", sessionId, userId, metadata: {}, options: {} },
        settings: { background: true, onDisconnect: "continue", onSessionBusy: "reject", callerTools: [] },
      };
      const { run } = await store.create(fresh, first);
      const runLog = new RunLog(run.id, "bench", store, run.lastSeq, first, Date.now, feed);
      for (let step = 1; runLog.lastSeq < events - 1; step++) for (const e of stepEvents(step)) if (runLog.lastSeq < events - 1) await runLog.push(e);
      const result = {
        success: true,
        output: "done",
        model: "echo-1",
        finishReason: "stop",
        usage: { inputTokens: 1, outputTokens: 1 },
        durationMs: 1,
        metadata: {},
      };
      if (ended) await runLog.push({ type: "completed", result }, { status: "completed", result, release: true });
      else await runLog.push({ type: "step_started", step: 10_000 });
      runLog.end();
      while ((await feed.lastSeq(run.id)) < events) await new Promise((r) => setTimeout(r, 10));
      return (await store.get(run.id))!;
    };
    const [endedRun, liveRun] = [await make(true), await make(false)];
    const journaled = (await store.events(endedRun.id, 0, 100_000)).length;
    const watch = (run: RunRecord, withFeed: boolean) => async () => {
      const t0 = performance.now();
      let n = 0;
      const sources = { store, local: () => undefined, pollMs: 250, ...(withFeed ? { feed } : {}) };
      for await (const e of watchRun(run, 0, new AbortController().signal, sources)) {
        n++;
        if (e.seq >= events) break;
      }
      return { events: n, ms: performance.now() - t0 };
    };
    const ways = [watch(endedRun, true), watch(liveRun, true), watch(endedRun, false), watch(liveRun, false)];
    const watches = Object.fromEntries(FEED_SOURCES.map((s) => [s, []])) as unknown as FeedReplay["watches"];
    for (const way of ways) await way();
    for (let round = 0; round < repeats; round++)
      for (let i = 0; i < ways.length; i++) {
        const at = (i + round) % ways.length;
        watches[FEED_SOURCES[at]!].push(await ways[at]!());
      }
    return { events, journaled, watches };
  } finally {
    await feed.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await drop();
    await pool.end();
  }
}

/** The feed's rows, each against the journal replay of the same run, with the servers' journal figure for context. */
function feedRows(r: FeedReplay, serverJournal: number): RunTargetRow[] {
  const rate = (s: (typeof FEED_SOURCES)[number]) => {
    const runs = r.watches[s];
    return { perSec: median(runs.map((w) => (w.events * 1000) / w.ms)), events: median(runs.map((w) => w.events)), ms: median(runs.map((w) => w.ms)) };
  };
  return (["ended", "live"] as const).map((state) => {
    const [feed, journal] = [rate(`feed, ${state} run`), rate(`journal, ${state} run`)];
    return {
      metric: `WatchRun replay of a ${r.events}-event run (${r.journaled} journaled) from Redis: ${state} run, events/s, in process on a replica without its live log (median of ${r.watches[`feed, ${state} run`].length})`,
      baseline: `journal, same run: ${journal.perSec.toFixed(0)} (${journal.events} events in ${journal.ms.toFixed(1)} ms)${state === "ended" ? `; over gRPC, ${SOURCES[4]}: ${serverJournal.toFixed(0)}` : ""}`,
      ours: `${feed.perSec.toFixed(0)} (${feed.events} events in ${feed.ms.toFixed(1)} ms)`,
      versus: `${(feed.perSec / journal.perSec).toFixed(2)}x; every event vs ${journal.events}`,
    };
  });
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    process.stderr.write(`bench:runs failed: ${(err as Error).stack ?? String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);
