import { describe, expect, it } from "vitest";
import { MemoryRunStore } from "../../src/runs/memory-store.ts";
import { RunLog } from "../../src/runs/run-log.ts";
import type { RunRecord, RunStore, SequencedEvent } from "../../src/runs/types.ts";
import { watchRun } from "../../src/runs/watch.ts";
import { accepted, newRun, OWNER } from "./run-fixtures.ts";

/** A store whose journal reads wait for `open()`: events published meanwhile reach the watcher's queue first. */
function slowJournal(store: RunStore) {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const wrapped: RunStore = Object.assign(Object.create(store) as RunStore, {
    events: async (runId: string, afterSeq: number, limit: number) => {
      await gate;
      return store.events(runId, afterSeq, limit);
    },
  });
  return { store: wrapped, open };
}

async function collect(it: AsyncIterable<SequencedEvent>): Promise<number[]> {
  const seqs: number[] = [];
  for await (const e of it) seqs.push(e.seq);
  return seqs;
}

describe("watchRun on the replica running the run", () => {
  it("sees every event once, deltas included, when events are published while it reads the journal", async () => {
    const memory = new MemoryRunStore();
    const { run } = await memory.create(newRun(), accepted());
    const { store, open } = slowJournal(memory);
    // Not seeded with `accepted`: the watcher from seq 0 must read the journal.
    const log = new RunLog(run.id, OWNER, memory, run.lastSeq);
    const watching = collect(watchRun(run as RunRecord, 0, new AbortController().signal, { store, local: () => log, pollMs: 10 }));
    await new Promise((r) => setImmediate(r));
    await log.push({ type: "delta", text: "a" });
    await log.push({ type: "delta", text: "b" });
    await log.push({ type: "step_finished", step: 1, finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 }, toolCalls: 0 });
    open();
    await new Promise((r) => setImmediate(r));
    await log.push({
      type: "completed",
      result: { success: true, output: "ab", model: "m", finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 }, durationMs: 1, metadata: {} },
    });
    log.end();
    expect(await watching).toEqual([1, 2, 3, 4, 5]);
  });

  it("a log that holds the run's first events answers a watch from seq 0 without the journal", async () => {
    const memory = new MemoryRunStore();
    const first = accepted();
    const { run } = await memory.create(newRun(), first);
    const { store } = slowJournal(memory); // never opened: reading the journal would hang
    const log = new RunLog(run.id, OWNER, memory, run.lastSeq, first);
    await log.push({ type: "delta", text: "a" });
    const watching = collect(watchRun(run as RunRecord, 0, new AbortController().signal, { store, local: () => log, pollMs: 10 }));
    await new Promise((r) => setImmediate(r));
    await log.push({ type: "failed", error: { code: 13, message: "x", reason: "INTERNAL" } });
    log.end();
    expect(await watching).toEqual([1, 2, 3]);
  });
});
