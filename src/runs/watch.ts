import { setTimeout as sleep } from "node:timers/promises";
import type { RunFeed } from "./feed.ts";
import type { RunLog } from "./run-log.ts";
import { FINISHED_STATUSES, type RunLogEvent, type RunRecord, type RunStore, type SequencedEvent } from "./types.ts";

/** The events after which a run has nothing more to say. */
const LAST: ReadonlySet<RunLogEvent["type"]> = new Set(["completed", "failed", "cancelled"]);
const PAGE = 500;
/** Entries one read of a run's feed asks for. */
const FEED_PAGE = 1000;
/** Followed events held for a watcher slower than the run: past it the follower waits. */
const HELD = 1024;

/** Where a watch reads from. */
export interface WatchSources {
  store: RunStore;
  /** The run's live log when this replica runs it. */
  local(runId: string): RunLog | undefined;
  pollMs: number;
  /** The runs' live feed: watchers of a run going on another replica see its text deltas too. */
  feed?: RunFeed;
  /** Calls `listener` with the run's log when this replica launches it (a parked run taken over here); returns the removal. */
  launched?(runId: string, listener: (log: RunLog) => void): () => void;
}

/**
 * A run's events after `afterSeq`, each once and in order, then what comes
 * next until the run ends or `signal` fires. On the replica running it the
 * watcher subscribes before it replays, so nothing falls between the replay
 * and the live events (text deltas included while they are held). Elsewhere,
 * with a feed, it reads and follows the feed, the journal filling what the feed
 * lost (text deltas trimmed from the feed are gone for good); without one, or
 * while Redis fails, it reads the journal and polls it: every event but text deltas.
 */
export async function* watchRun(run: Pick<RunRecord, "id">, afterSeq: number, signal: AbortSignal, sources: WatchSources): AsyncGenerator<SequencedEvent> {
  const log = sources.local(run.id);
  if (log && !log.isEnded) yield* fromLog(log, run.id, afterSeq, signal, sources);
  else if (sources.feed) yield* fromFeed(run.id, afterSeq, signal, sources, sources.feed);
  else yield* fromJournal(run.id, afterSeq, signal, sources);
}

/**
 * The run's events from its log on this replica: subscribed before the replay, so nothing falls
 * between the two. A log that ended already (the run went on here and finished before the watcher
 * got to it) still holds its recent events.
 */
async function* fromLog(log: RunLog, runId: string, afterSeq: number, signal: AbortSignal, sources: WatchSources): AsyncGenerator<SequencedEvent> {
  let last = afterSeq;
  const queue: SequencedEvent[] = [];
  let ended = false;
  let finished = false;
  let wake: (() => void) | undefined;
  const stop = log.watch({
    event(e) {
      queue.push(e);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
  });
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    const held = log.since(last);
    let replay = held ?? (await readJournal(sources.store, runId, last));
    // What was published while the journal was read is queued already, deltas and all: from there on
    // the queue has it, and the journal (which has no deltas) must not jump the cursor past them.
    if (!held && queue.length) replay = replay.filter((e) => e.seq < queue[0]!.seq);
    for (const e of replay) {
      if (e.seq <= last) continue;
      last = e.seq;
      finished ||= LAST.has(e.event.type);
      yield e;
    }
    while (!signal.aborted) {
      const e = queue.shift();
      if (e) {
        if (e.seq <= last) continue;
        last = e.seq;
        finished ||= LAST.has(e.event.type);
        yield e;
        continue;
      }
      if (ended) break;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    stop();
    signal.removeEventListener("abort", onAbort);
  }
  // The log ended without the run's last word (it parked, or was handed over), or the watcher attached as
  // it ended: the journal has what was written, and says what comes next.
  if (ended && !signal.aborted && !finished) yield* fromJournal(runId, last, signal, sources);
}

/**
 * A run going (or gone) elsewhere: what its feed holds after `afterSeq`, then the feed followed, each
 * gap in its seqs filled from the journal (the barriers of what was trimmed or never published). A
 * follower quiet for `pollMs * 20` asks the store whether the run ended, or journaled what the feed
 * never got (its publish failed), and finishes from the journal. Redis failing: the journal, polled.
 */
async function* fromFeed(runId: string, afterSeq: number, signal: AbortSignal, sources: WatchSources, feed: RunFeed): AsyncGenerator<SequencedEvent> {
  const { store } = sources;
  let last = afterSeq;
  /** `e`, after what the journal holds that the feed skipped before it; true once the run said its last. */
  async function* pass(e: SequencedEvent): AsyncGenerator<SequencedEvent, boolean> {
    if (e.seq <= last) return false;
    if (e.seq > last + 1) {
      for (const j of await journalBetween(store, runId, last, e.seq)) {
        last = j.seq;
        yield j;
        if (LAST.has(j.event.type)) return true;
      }
    }
    last = e.seq;
    yield e;
    return LAST.has(e.event.type);
  }
  /** The journal has events after the cursor that the feed does not (or the run ended): they are passed on. */
  async function* catchUp(): AsyncGenerator<SequencedEvent, "over" | "going" | "down"> {
    const run = await store.get(runId);
    // Read after the status: a run that ended before it has its last event in the journal.
    const over = !run || FINISHED_STATUSES.includes(run.status);
    if (!(await store.events(runId, last, 1)).length) return over ? "over" : "going";
    const held = await readFeed(feed, runId, last);
    if (!held) return "down";
    // Still going and the feed has more: the follower brings it, and fills what it skips.
    if (held.length && !over) return "going";
    for (const e of held) if (yield* pass(e)) return "over";
    for (const j of await readJournal(store, runId, last)) {
      last = j.seq;
      yield j;
      if (LAST.has(j.event.type)) return "over";
    }
    return over ? "over" : "going";
  }

  const held = await readFeed(feed, runId, last);
  if (!held) return yield* fromJournal(runId, last, signal, sources);
  for (const e of held) if (yield* pass(e)) return;
  const caught = yield* catchUp();
  if (caught === "over") return;
  if (caught === "down") return yield* fromJournal(runId, last, signal, sources);
  const follower = new Follower(feed, runId, last, signal);
  const quietMs = sources.pollMs * 20;
  let heard = Date.now();
  try {
    while (!signal.aborted) {
      const e = follower.take();
      if (e) {
        heard = Date.now();
        if (yield* pass(e)) return;
        continue;
      }
      if (follower.done) {
        // Redis failed (or the feed closed) under the follower: on from the journal.
        if (!signal.aborted) yield* fromJournal(runId, last, signal, sources);
        return;
      }
      if (await follower.wait(quietMs - (Date.now() - heard))) continue;
      heard = Date.now();
      const state = yield* catchUp();
      if (state === "over") return;
      if (state === "down") return yield* fromJournal(runId, last, signal, sources);
    }
  } finally {
    await follower.close();
  }
}

/** A feed's follow read ahead into a bounded queue, so that a watcher can wait on it and a timer at once. */
class Follower {
  /** The follow ended: aborted, the feed closed, or Redis failed. */
  done = false;
  private readonly queue: SequencedEvent[] = [];
  private readonly stop = new AbortController();
  private readonly pump: Promise<void>;
  private wake: (() => void) | undefined;
  private room: (() => void) | undefined;

  constructor(feed: RunFeed, runId: string, afterSeq: number, signal: AbortSignal) {
    const onAbort = () => this.stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    this.pump = (async () => {
      try {
        for await (const e of feed.follow(runId, afterSeq, this.stop.signal)) {
          this.queue.push(e);
          this.wake?.();
          if (this.queue.length >= HELD) await new Promise<void>((resolve) => (this.room = resolve));
        }
      } catch {
        // The feed logged it; done says it.
      } finally {
        this.done = true;
        signal.removeEventListener("abort", onAbort);
        this.wake?.();
      }
    })();
  }

  /** The next event read, if one is. */
  take(): SequencedEvent | undefined {
    const e = this.queue.shift();
    if (this.room && this.queue.length < HELD / 2) {
      this.room();
      this.room = undefined;
    }
    return e;
  }

  /** True when an event came or the follow ended, false after `ms` without. */
  wait(ms: number): Promise<boolean> {
    if (this.queue.length || this.done) return Promise.resolve(true);
    if (ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(true);
      };
    });
  }

  async close(): Promise<void> {
    this.stop.abort();
    this.room?.();
    await this.pump;
  }
}

/**
 * The journal after `afterSeq`, then polled while the run goes on. When the run
 * is launched on this replica meanwhile (parked, then answered here), its log
 * takes over: it has the text deltas the journal lacks.
 */
async function* fromJournal(runId: string, afterSeq: number, signal: AbortSignal, sources: WatchSources): AsyncGenerator<SequencedEvent> {
  let last = afterSeq;
  let handed: RunLog | undefined;
  const nap = new AbortController();
  const off = sources.launched?.(runId, (log) => {
    handed = log;
    nap.abort();
  });
  const napping = AbortSignal.any([signal, nap.signal]);
  try {
    while (!signal.aborted) {
      if (handed) return yield* fromLog(handed, runId, last, signal, sources);
      const events = await sources.store.events(runId, last, PAGE);
      for (const e of events) {
        last = e.seq;
        yield e;
        if (LAST.has(e.event.type)) return;
      }
      if (events.length === PAGE) continue;
      const run = await sources.store.get(runId);
      if (!run || FINISHED_STATUSES.includes(run.status)) {
        // Finished between the two reads: what it wrote last is in the journal now.
        for (const e of await sources.store.events(runId, last, PAGE)) yield e;
        return;
      }
      const here = handed ?? sources.local(runId);
      if (here) return yield* fromLog(here, runId, last, signal, sources);
      await sleep(sources.pollMs, undefined, { signal: napping }).catch(() => undefined);
    }
  } finally {
    off?.();
  }
}

/** The journaled events after `afterSeq` and before `beforeSeq`. */
async function journalBetween(store: RunStore, runId: string, afterSeq: number, beforeSeq: number): Promise<SequencedEvent[]> {
  const out: SequencedEvent[] = [];
  for (let last = afterSeq; ;) {
    const page = await store.events(runId, last, PAGE);
    for (const e of page) {
      if (e.seq >= beforeSeq) return out;
      out.push(e);
    }
    if (page.length < PAGE) return out;
    last = page.at(-1)!.seq;
  }
}

/** What the feed holds after `afterSeq`, or undefined when Redis fails (the feed logs it). */
async function readFeed(feed: RunFeed, runId: string, afterSeq: number): Promise<SequencedEvent[] | undefined> {
  const out: SequencedEvent[] = [];
  try {
    for (let last = afterSeq; ;) {
      const page = await feed.read(runId, last, FEED_PAGE);
      out.push(...page);
      if (page.length < FEED_PAGE) return out;
      last = page.at(-1)!.seq;
    }
  } catch {
    return undefined;
  }
}

/** A run's whole journal after `afterSeq`, read page by page. */
export async function readJournal(store: RunStore, runId: string, afterSeq: number): Promise<SequencedEvent[]> {
  const out: SequencedEvent[] = [];
  for (let last = afterSeq; ;) {
    const page = await store.events(runId, last, PAGE);
    out.push(...page);
    if (page.length < PAGE) return out;
    last = page.at(-1)!.seq;
  }
}
