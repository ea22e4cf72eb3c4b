// The main thread's side of span export: what it hands the worker, what it
// drops, and that it holds the process up only while it waits on an answer.
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import type { ToMain, ToWorker } from "../../src/telemetry/worker-messages.ts";
import { WorkerSpanProcessor } from "../../src/telemetry/worker-processor.ts";

/** A worker stand-in: records what it is sent and whether it is ref'd; answers when told. */
class FakeWorker {
  sent: ToWorker[] = [];
  refs: ("ref" | "unref")[] = [];
  private listener: ((m: ToMain) => void) | undefined;
  postMessage(message: ToWorker) {
    this.sent.push(message);
  }
  on(_event: "message", listener: (m: ToMain) => void) {
    this.listener = listener;
  }
  ref() {
    this.refs.push("ref");
  }
  unref() {
    this.refs.push("unref");
  }
  reply(message: ToMain) {
    this.listener!(message);
  }
  pendingIds() {
    return this.sent.flatMap((m) => (m.type === "batch" ? [] : [m.id]));
  }
}

function setUp(maxQueue = 100) {
  const worker = new FakeWorker();
  const warnings: object[] = [];
  const processor = new WorkerSpanProcessor(worker, { maxQueue, batchSpans: 2, delayMs: 60_000 }, { warn: (o) => warnings.push(o), error: () => {} });
  const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("t");
  const end = (name: string) => tracer.startSpan(name).end();
  return { worker, processor, end, warnings };
}

describe("WorkerSpanProcessor", () => {
  it("hands spans over in batches, each span's name intact", () => {
    const { worker, end } = setUp();
    end("a");
    expect(worker.sent).toEqual([]);
    end("b");
    const batches = worker.sent.filter((m) => m.type === "batch");
    expect(batches).toHaveLength(1);
    expect(batches[0]!.batch.spans.map((s) => s[6])).toEqual(["a", "b"]);
  });

  it("refs the worker while a flush is unanswered, and unrefs it once every request is answered", async () => {
    const { worker, processor, end } = setUp();
    end("a");
    const first = processor.forceFlush();
    const second = processor.forceFlush();
    expect(worker.refs).toEqual(["ref"]);
    const [id1, id2] = worker.pendingIds();
    worker.reply({ type: "done", id: id1! });
    await first;
    expect(worker.refs).toEqual(["ref"]);
    worker.reply({ type: "done", id: id2! });
    await second;
    expect(worker.refs).toEqual(["ref", "unref"]);
  });

  it("a failed shutdown rejects with the worker's reason and unrefs the worker", async () => {
    const { worker, processor } = setUp();
    const shutdown = processor.shutdown();
    worker.reply({ type: "done", id: worker.pendingIds()[0]!, error: "collector down" });
    await expect(shutdown).rejects.toThrow("span export shutdown failed: collector down");
    expect(worker.refs).toEqual(["ref", "unref"]);
  });

  it("drops spans beyond maxQueue until the worker takes some; the first drop is logged at once, the rest by shutdown", async () => {
    const { worker, processor, end, warnings } = setUp(2);
    for (const name of ["a", "b", "c"]) end(name);
    expect(warnings).toEqual([expect.objectContaining({ dropped: 1 })]);
    end("d");
    worker.reply({ type: "taken", count: 2 });
    end("e");
    const shutdown = processor.shutdown();
    worker.reply({ type: "done", id: worker.pendingIds()[0]! });
    await shutdown;
    const names = worker.sent.flatMap((m) => (m.type === "batch" ? m.batch.spans.map((s) => s[6]) : []));
    expect(names).toEqual(["a", "b", "e"]);
    expect(warnings).toEqual([expect.objectContaining({ dropped: 1, maxQueue: 2 }), expect.objectContaining({ dropped: 1, maxQueue: 2 })]);
  });
});
