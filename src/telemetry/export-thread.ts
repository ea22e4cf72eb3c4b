import type { SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Worker } from "node:worker_threads";
import { spanProcessorsFromEnv } from "./trace-exporters.ts";
import type { ToMain } from "./worker-messages.ts";
import { WorkerSpanProcessor, type ExportLog } from "./worker-processor.ts";

type Env = Readonly<Record<string, string | undefined>>;

/** How long the worker may take to load the exporters before export stays in this thread. */
const START_TIMEOUT_MS = 15_000;

/**
 * The span processors for OTEL_* tracing: a hand-off to an export worker that
 * runs the real exporters, or, where no worker starts (a runtime without
 * worker_threads, a sandbox), the exporters themselves in this thread.
 */
export async function exportProcessors(env: Env, log: ExportLog): Promise<SpanProcessor[]> {
  let worker: Worker;
  try {
    // The worker's process.env is ours (the OTLP exporters read their endpoint and headers from it).
    worker = new Worker(new URL("./export-worker-boot.mjs", import.meta.url), { workerData: { env: { ...env } }, env: { ...env } });
  } catch (err) {
    log.warn({ err }, "span export worker could not start: exporting in the main thread");
    return spanProcessorsFromEnv(env);
  }
  const started = await new Promise<true | Error>((resolve) => {
    const timer = setTimeout(() => resolve(new Error(`no answer in ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    worker.once("error", (err) => (clearTimeout(timer), resolve(err)));
    worker.on("message", function ready(m: ToMain) {
      if (m.type !== "ready") return;
      worker.off("message", ready);
      clearTimeout(timer);
      resolve(true);
    });
  });
  if (started !== true) {
    log.warn({ err: started }, "span export worker could not start: exporting in the main thread");
    void worker.terminate();
    return spanProcessorsFromEnv(env);
  }
  const num = (value: string | undefined, fallback: number) => (value && Number(value) > 0 ? Number(value) : fallback);
  const processor = new WorkerSpanProcessor(worker, { maxQueue: num(env.OTEL_BSP_MAX_QUEUE_SIZE, 2048), batchSpans: 256, delayMs: 50 }, log);
  worker.on("error", (err) => log.error({ err }, "span export worker failed: spans are no longer exported"));
  worker.on("exit", (code) => processor.workerGone(`the export worker exited (code ${code})`));
  // Idle, it must not keep a process alive; the processor refs it while a flush or shutdown is answered.
  worker.unref();
  return [processor];
}
