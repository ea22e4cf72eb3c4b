import { setTimeout as sleep } from "node:timers/promises";
import type { RunLog } from "./run-log.ts";
import { FINISHED_STATUSES, type RunLogEvent, type RunRecord, type RunStore, type SequencedEvent } from "./types.ts";

/** The events after which a run has nothing more to say. */
const LAST: ReadonlySet<RunLogEvent["type"]> = new Set(["completed", "failed", "cancelled"]);
const PAGE = 500;

/** Where a watch reads from. */
export interface WatchSources {
  store: RunStore;
  /** The run's live log when this replica runs it. */
  local(runId: string): RunLog | undefined;
  pollMs: number;
}

/**
 * A run's events after `afterSeq`, each once and in order, then what comes
 * next until the run ends or `signal` fires. On the replica running it the
 * watcher subscribes before it replays, so nothing falls between the replay
 * and the live events (text deltas included while they are held); elsewhere
 * it reads the journal and polls it, so it sees every event but text deltas.
 */
export async function* watchRun(run: RunRecord, afterSeq: number, signal: AbortSignal, sources: WatchSources): AsyncGenerator<SequencedEvent> {
  let last = afterSeq;
  const log = sources.local(run.id);
  if (log && !log.isEnded) {
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
      let replay = held ?? (await readJournal(sources.store, run.id, last));
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
    // The log ended without its last word reaching this watcher (it attached as the run ended): the journal has it.
    if (ended && !signal.aborted && !finished) yield* fromJournal(run.id, last, signal, sources);
    return;
  }
  yield* fromJournal(run.id, last, signal, sources);
}

/** The journal after `afterSeq`, then polled while the run goes on. */
async function* fromJournal(runId: string, afterSeq: number, signal: AbortSignal, sources: WatchSources): AsyncGenerator<SequencedEvent> {
  let last = afterSeq;
  while (!signal.aborted) {
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
    await sleep(sources.pollMs, undefined, { signal }).catch(() => undefined);
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
