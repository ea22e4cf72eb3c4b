import type { RunLogEvent, RunStore, SequencedEvent } from "./types.ts";

/** The events after which a run has nothing more to say. */
export const LAST: ReadonlySet<RunLogEvent["type"]> = new Set(["completed", "failed", "cancelled"]);
/** Events one read of a journal asks for. */
export const PAGE = 500;

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

/** The journaled events after `afterSeq` and before `beforeSeq`. */
export async function journalBetween(store: RunStore, runId: string, afterSeq: number, beforeSeq: number): Promise<SequencedEvent[]> {
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
