import { TraceFlags } from "@opentelemetry/api";
import type { Resource } from "@opentelemetry/resources";
import type { ReadableSpan, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { encodeSpan, type WireBatch, type WireScope } from "./span-wire.ts";
import type { ToMain, ToWorker } from "./worker-messages.ts";

/** The side of a worker (or a MessagePort) the processor talks to. */
export interface ExportPort {
  postMessage(message: ToWorker): void;
  on(event: "message", listener: (message: ToMain) => void): unknown;
  /** Keep the process alive (while a flush or shutdown waits on an answer); absent, it always is. */
  ref?(): void;
  /** Let the process exit (nothing is waited for). */
  unref?(): void;
}

/** Where the processor reports what it had to drop and what the exporters complain of. */
export interface ExportLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** How much the hand-off holds and how often it hands over. */
export interface HandOffOptions {
  /** Spans handed over but not yet taken by the worker, beyond which new ones are dropped (OTEL_BSP_MAX_QUEUE_SIZE). */
  maxQueue: number;
  /** Spans per hand-off. */
  batchSpans: number;
  /** The longest a finished span waits before it is handed over, in ms. */
  delayMs: number;
}

/** How often, at most, drops are logged: a steady overload must not flood the log. */
const DROP_REPORT_MS = 10_000;

/**
 * The main thread's span processor when export runs in a worker: each finished
 * span is encoded as plain data (span-wire.ts) and handed over in batches, so
 * OTLP serialisation, HTTP and their garbage cost the main thread nothing. The
 * spans the worker has not yet taken are bounded; past the bound new spans are
 * dropped, counted and logged, rather than growing memory.
 */
export class WorkerSpanProcessor implements SpanProcessor {
  private pending: WireBatch = { spans: [], scopes: [] };
  private scopeIndex = new Map<ReadableSpan["instrumentationScope"], number>();
  private sentResource: Resource | undefined;
  private outstanding = 0;
  private dropped = 0;
  private lastDropReport = 0;
  private dropTimer: ReturnType<typeof setTimeout> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, (error?: string) => void>();
  private closed = false;

  constructor(
    private readonly port: ExportPort,
    private readonly options: HandOffOptions,
    private readonly log: ExportLog,
  ) {
    port.on("message", (m) => this.receive(m));
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.closed || this.outstanding >= this.options.maxQueue) {
      this.dropped++;
      this.reportDrops(false);
      return;
    }
    this.outstanding++;
    const batch = this.pending;
    if (span.resource !== this.sentResource) {
      this.sentResource = span.resource;
      batch.resource = { attributes: span.resource.attributes, schemaUrl: span.resource.schemaUrl };
    }
    let scope = this.scopeIndex.get(span.instrumentationScope);
    if (scope === undefined) {
      const { name, version, schemaUrl } = span.instrumentationScope;
      scope = batch.scopes.push([name, version, schemaUrl] satisfies WireScope) - 1;
      this.scopeIndex.set(span.instrumentationScope, scope);
    }
    batch.spans.push(encodeSpan(span, scope));
    if (batch.spans.length >= this.options.batchSpans) this.handOff();
    else if (!this.timer) this.timer = unref(setTimeout(this.handOff, this.options.delayMs));
  }

  /** Hands over what is pending and waits for the worker's exporters to send everything they hold. */
  forceFlush(): Promise<void> {
    this.handOff();
    return this.request("flush");
  }

  /** Flushes, then shuts the worker's exporters down; later spans are dropped. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.handOff();
    this.closed = true;
    try {
      await this.request("shutdown");
    } finally {
      this.reportDrops(true);
    }
  }

  /** The worker stopped (crashed or was terminated): what it was asked is answered, later spans are dropped. */
  workerGone(reason: string): void {
    this.closed = true;
    for (const resolve of this.waiting.values()) resolve(reason);
    this.waiting.clear();
  }

  private readonly handOff = (): void => {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    if (batch.spans.length === 0) return;
    this.pending = { spans: [], scopes: [] };
    // Scope indexes are per batch.
    this.scopeIndex.clear();
    this.port.postMessage({ type: "batch", batch });
  };

  private request(type: "flush" | "shutdown"): Promise<void> {
    if (this.closed && type === "flush") return Promise.resolve();
    const id = this.nextId++;
    // An unref'd worker's answer does not hold the event loop: with nothing else left to do (the
    // servers closed at shutdown), the process would exit before the spans are sent.
    if (this.waiting.size === 0) this.port.ref?.();
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, (error) => (error ? reject(new Error(`span export ${type} failed: ${error}`)) : resolve()));
      this.port.postMessage({ type, id });
    });
  }

  private answer(id: number, error: string | undefined): void {
    const resolve = this.waiting.get(id);
    if (!resolve) return;
    this.waiting.delete(id);
    if (this.waiting.size === 0) this.port.unref?.();
    resolve(error);
  }

  private receive(m: ToMain): void {
    if (m.type === "taken") this.outstanding -= m.count;
    else if (m.type === "done") this.answer(m.id, m.error);
    else if (m.type === "log") this.log[m.level]({ exporter: "traces" }, m.message);
  }

  private reportDrops(final: boolean): void {
    if (this.dropped === 0) return;
    const now = Date.now();
    if (!final && now - this.lastDropReport < DROP_REPORT_MS) {
      // Held back, not forgotten: reported when the interval is up even if no span is dropped after.
      this.dropTimer ??= unref(setTimeout(() => ((this.dropTimer = undefined), this.reportDrops(false)), DROP_REPORT_MS - (now - this.lastDropReport)));
      return;
    }
    if (this.dropTimer) clearTimeout(this.dropTimer);
    this.dropTimer = undefined;
    this.lastDropReport = now;
    this.log.warn({ dropped: this.dropped, maxQueue: this.options.maxQueue }, "spans dropped: the export worker is behind (OTEL_BSP_MAX_QUEUE_SIZE)");
    this.dropped = 0;
  }
}

// A pending hand-off must not keep a stopping process alive; shutdown flushes it.
function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
