// The export worker: runs the span processors OTEL_* asks for (OTLP protobuf
// serialisation and HTTP, the console) off the main thread, fed the finished
// spans the main thread hands over (worker-processor.ts). Started through
// export-worker-boot.mjs, which makes TypeScript loadable here on Node.
import { diag, DiagLogLevel } from "@opentelemetry/api";
import { resourceFromAttributes, type Resource } from "@opentelemetry/resources";
import type { ReadableSpan, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { parentPort, workerData } from "node:worker_threads";
import { decodeSpan, type WireBatch } from "./span-wire.ts";
import { spanProcessorsFromEnv } from "./trace-exporters.ts";
import type { ToMain, ToWorker } from "./worker-messages.ts";

const port = parentPort!;
const post = (message: ToMain) => port.postMessage(message);

// The processors' own complaints (a full batch queue dropping spans, a failed export) go to the main thread's log.
diag.setLogger(
  {
    error: (message) => post({ type: "log", level: "error", message }),
    warn: (message) => post({ type: "log", level: "warn", message }),
    info: () => {},
    debug: () => {},
    verbose: () => {},
  },
  DiagLogLevel.WARN,
);

const processors: SpanProcessor[] = spanProcessorsFromEnv((workerData as { env: Record<string, string | undefined> }).env);
let resource: Resource = resourceFromAttributes({});
const scopeCache = new Map<string, ReadableSpan["instrumentationScope"]>();

function take(batch: WireBatch): void {
  // The resource is sent once (and again only if it changes); one object, so the OTLP encoder groups every span under it.
  if (batch.resource) resource = resourceFromAttributes(batch.resource.attributes, { schemaUrl: batch.resource.schemaUrl });
  const scopes = batch.scopes.map(([name, version, schemaUrl]) => {
    const key = `${name}@${version ?? ""}:${schemaUrl ?? ""}`;
    let scope = scopeCache.get(key);
    if (!scope) scopeCache.set(key, (scope = { name, version, schemaUrl }));
    return scope;
  });
  for (const wire of batch.spans) {
    const span = decodeSpan(wire, resource, scopes);
    for (const p of processors) p.onEnd(span);
  }
}

async function settle(id: number, work: () => Promise<unknown>): Promise<void> {
  try {
    await work();
    post({ type: "done", id });
  } catch (err) {
    post({ type: "done", id, error: String((err as Error)?.message ?? err) });
  }
}

port.on("message", (message: ToWorker) => {
  switch (message.type) {
    case "batch":
      take(message.batch);
      // Acknowledged once the processors hold them: the main thread's bound counts spans not yet taken.
      post({ type: "taken", count: message.batch.spans.length });
      break;
    case "flush":
      void settle(message.id, () => Promise.all(processors.map((p) => p.forceFlush())));
      break;
    case "shutdown":
      // Closing the port once answered lets the worker exit by itself.
      void settle(message.id, () => Promise.all(processors.map((p) => p.shutdown()))).then(() => port.close());
      break;
  }
});
post({ type: "ready" });
