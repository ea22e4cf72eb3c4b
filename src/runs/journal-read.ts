import type { RunLogEvent, RunStore, SequencedEvent } from "./types.ts";

/** The events after which a run has nothing more to say. */
export const LAST: ReadonlySet<RunLogEvent["type"]> = new Set(["completed", "failed", "cancelled"]);
/** Events one read of a journal asks for. */
export const PAGE = 500;

/** Reads one page of a run's events after a seq: the journal's, or its feed's. */
type PageRead = (afterSeq: number, limit: number) => Promise<SequencedEvent[]>;

/** Every event `read` gives after `afterSeq`, page by page, up to (not including) the first at or past `beforeSeq`. */
export async function readPages(read: PageRead, afterSeq: number, limit: number, beforeSeq = Infinity): Promise<SequencedEvent[]> {
  const out: SequencedEvent[] = [];
  for (let last = afterSeq; ;) {
    const page = await read(last, limit);
    for (const e of page) {
      if (e.seq >= beforeSeq) return out;
      out.push(e);
    }
    if (page.length < limit) return out;
    last = page.at(-1)!.seq;
  }
}

/** A run's whole journal after `afterSeq`. */
export function readJournal(store: RunStore, runId: string, afterSeq: number): Promise<SequencedEvent[]> {
  return readPages((after, limit) => store.events(runId, after, limit), afterSeq, PAGE);
}

/** The journaled events after `afterSeq` and before `beforeSeq`. */
export function journalBetween(store: RunStore, runId: string, afterSeq: number, beforeSeq: number): Promise<SequencedEvent[]> {
  return readPages((after, limit) => store.events(runId, after, limit), afterSeq, PAGE, beforeSeq);
}
