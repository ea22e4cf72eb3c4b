import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import { exit, onReloadSignal, onShutdownSignal, runtimeName } from "../runtime/process.ts";
import { isMessage, type ListeningMessage, type MetricsReply, type MetricsRequest, WORKER_SLOT_ENV } from "./messages.ts";
import { MetricsServer } from "../telemetry/metrics-server.ts";
import { mergeMetrics } from "./metrics-merge.ts";

/** How the supervisor runs `server.workers` processes. */
export interface SupervisorOptions {
  workers: number;
  host: string;
  /** The admin port: the supervisor serves every worker's metrics on it; null: none. */
  metricsPort: number | null;
  log: Logger;
  /** Flushes the log (before the process exits). */
  flush(): void;
}

// A worker that dies within this of its start is crash-looping: the next start waits, doubling up to the cap.
const STABLE_MS = 10_000;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;
// A worker that does not answer for its metrics within this is left out of that scrape.
const METRICS_TIMEOUT_MS = 2_000;

interface Slot {
  worker: Worker;
  startedAt: number;
  listening: boolean;
  /** Delay before the next restart, when this one dies young. */
  delayMs: number;
}

/**
 * The supervisor of `server.workers` server processes (Node's cluster: both
 * ports are bound once and their connections handed out in turn). It runs no
 * server itself. A worker that dies is logged and started again (waiting
 * longer each time one dies young); SIGHUP reloads every worker; SIGTERM or
 * SIGINT drains them all, then it exits. One that dies before every worker is
 * serving stops them all, with its exit status: a plugin that fails to load
 * would fail in every worker.
 */
export class Supervisor {
  private readonly slots = new Map<number, Slot>();
  private announced = false;
  private stopping = false;
  private failed = 0;
  private metrics: MetricsServer | undefined;
  private metricsPort: number | undefined;
  private nextRequest = 1;
  private readonly replies = new Map<number, (text: string) => void>();

  constructor(private readonly o: SupervisorOptions) {}

  /** Starts the workers and the metrics port; resolves once they are started (not yet serving). */
  async start(): Promise<void> {
    if (runtimeName !== "node") throw new Error("server.workers needs Node's cluster module");
    if (this.o.metricsPort !== null) {
      // Every serving worker's metrics, each sample labelled with its worker's slot.
      this.metrics = new MetricsServer(
        (_req, res) => void this.collect().then((text) => res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(text)),
      );
      this.metricsPort = await this.metrics.listen(this.o.host, this.o.metricsPort);
    }
    onShutdownSignal((signal) => this.stop(signal));
    onReloadSignal(() => {
      this.o.log.info({ workers: this.slots.size }, "reloading every worker");
      for (const { worker } of this.slots.values()) worker.process.kill("SIGHUP");
    });
    cluster.on("message", (worker, message: unknown) => this.onMessage(worker, message));
    cluster.on("exit", (worker, code, signal) => this.onExit(worker, code, signal));
    for (let slot = 1; slot <= this.o.workers; slot++) this.fork(slot, FIRST_DELAY_MS);
  }

  private fork(slot: number, delayMs: number): void {
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot) });
    this.slots.set(slot, { worker, startedAt: Date.now(), listening: false, delayMs });
  }

  private slotOf(worker: Worker): number | undefined {
    for (const [slot, s] of this.slots) if (s.worker === worker) return slot;
    return undefined;
  }

  private onMessage(worker: Worker, message: unknown): void {
    if (isMessage<MetricsReply>(message, "qingyu:metrics")) {
      this.replies.get(message.id)?.(message.text);
      return;
    }
    if (!isMessage<ListeningMessage>(message, "qingyu:listening")) return;
    const slot = this.slotOf(worker);
    const s = slot === undefined ? undefined : this.slots.get(slot);
    if (!s) return;
    s.listening = true;
    if (this.announced) {
      this.o.log.info({ worker: slot, pid: worker.process.pid }, "worker serving again");
      return;
    }
    if ([...this.slots.values()].every((x) => x.listening)) {
      this.announced = true;
      // Always announced, whatever log.level says: operators and scripts look for it.
      this.o.log.child({}, { level: "info" }).info(
        {
          grpcPort: message.grpcPort,
          httpPort: message.httpPort,
          metricsPort: this.metricsPort,
          host: this.o.host,
          runtime: runtimeName,
          workers: this.o.workers,
          pids: [...this.slots.values()].map((x) => x.worker.process.pid),
        },
        "listening",
      );
      this.o.flush();
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slotOf(worker);
    if (slot === undefined) return;
    const s = this.slots.get(slot)!;
    this.slots.delete(slot);
    const status = code ?? (signal ? 1 : 0);
    if (this.stopping) {
      if (status !== 0) this.failed = status;
      if (!this.slots.size) this.finish();
      return;
    }
    if (!this.announced) {
      // Every worker runs the same config and plugins: what failed one fails all. Stop, with its status.
      this.o.log.error({ worker: slot, pid: worker.process.pid, code, signal }, "a worker stopped while the workers were starting; stopping");
      this.failed = status || 1;
      this.stop("start-up failure");
      return;
    }
    const young = Date.now() - s.startedAt < STABLE_MS;
    const delayMs = young ? s.delayMs : 0;
    this.o.log.warn({ worker: slot, pid: worker.process.pid, code, signal, restartInMs: delayMs }, "worker exited; starting another");
    const timer = setTimeout(() => {
      if (!this.stopping) this.fork(slot, young ? Math.min(MAX_DELAY_MS, s.delayMs * 2) : FIRST_DELAY_MS);
    }, delayMs);
    timer.unref();
    // Kept in the map as a placeholder would let a stop finish early; the timer re-forks unless stopping.
  }

  private stop(reason: string): void {
    if (this.stopping) return;
    this.stopping = true;
    this.o.log.info({ reason, workers: this.slots.size }, "stopping every worker");
    if (!this.slots.size) return this.finish();
    // Each worker drains as a single server does on SIGTERM (server.shutdownGraceMs).
    for (const { worker } of this.slots.values()) worker.process.kill("SIGTERM");
  }

  private finish(): void {
    void (this.metrics?.close() ?? Promise.resolve()).then(() => {
      this.o.log.info({ status: this.failed }, "stopped");
      this.o.flush();
      exit(this.failed);
    });
  }

  private async collect(): Promise<string> {
    const asks = [...this.slots.entries()]
      .filter(([, s]) => s.listening && s.worker.isConnected())
      .map(([slot, s]) => {
        const id = this.nextRequest++;
        return new Promise<{ worker: number; text: string } | undefined>((resolve) => {
          const timer = setTimeout(() => {
            this.replies.delete(id);
            resolve(undefined);
          }, METRICS_TIMEOUT_MS);
          this.replies.set(id, (text) => {
            clearTimeout(timer);
            this.replies.delete(id);
            resolve({ worker: slot, text });
          });
          s.worker.send({ type: "qingyu:metrics?", id } satisfies MetricsRequest);
        });
      });
    const texts = (await Promise.all(asks)).filter((t) => t !== undefined);
    return mergeMetrics(texts.sort((a, b) => a.worker - b.worker));
  }
}
