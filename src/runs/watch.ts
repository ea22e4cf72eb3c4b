import { setTimeout as sleep } from "node:timers/promises";
import type { RunFeed } from "./feed.ts";
import { LAST, PAGE, readJournal } from "./journal-read.ts";
import type { RunLog } from "./run-log.ts";
import { FINISHED_STATUSES, type RunRecord, type RunStore, type SequencedEvent } from "./types.ts";
import { fromFeed } from "./watch-feed.ts";

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
  else if (sources.feed) yield* fromFeed(run.id, afterSeq, signal, sources, sources.feed, (after) => fromJournal(run.id, after, signal, sources));
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
