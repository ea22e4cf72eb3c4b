import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";

/** The process-wide bound on batch work (config `executor.batch`). */
export interface BatchGateLimits {
  /** Batch items running at once, across every batch. */
  maxItemsInFlight: number;
  /** Items of admitted batches waiting for a slot; a batch that would exceed it is refused whole. */
  maxQueuedItems: number;
}

/** A batch's share of the gate: it runs an item only while holding one of its slots. */
export interface BatchSlots {
  /** Waits for a slot; rejects with the signal's reason when the call is aborted first. */
  acquire(signal: AbortSignal): Promise<void>;
  /** Gives back the slot the last acquire() took. */
  release(): void;
}

/** What a refused batch is told to wait before trying again: items finish in milliseconds to seconds. */
const BATCH_RETRY_AFTER_MS = 1000;

/** Slots for a batch run outside any gate (tests, embedding). */
export const unlimitedSlots: BatchSlots = { acquire: () => Promise.resolve(), release: () => undefined };

interface Waiter {
  ticket: Ticket;
  resolve: () => void;
}

/**
 * Bounds batch work per process: at most `maxItemsInFlight` items run at once,
 * across every batch, and at most `maxQueuedItems` more wait. A batch is
 * admitted whole or not at all, before any of its items runs, so a refused
 * caller has used nothing and a flood of batches cannot queue unbounded work
 * in front of everyone else. Waiters are served first come, first served.
 */
export class BatchGate {
  private inFlight = 0;
  private queued = 0;
  private readonly waiters: Waiter[] = [];

  constructor(private limits: BatchGateLimits) {}

  /** Takes effect for batches admitted from now on (a reload changes them). */
  configure(limits: BatchGateLimits): void {
    this.limits = limits;
    this.wake();
  }

  /** Items running and waiting now, for tests and metrics. */
  get load(): { inFlight: number; queued: number } {
    return { inFlight: this.inFlight, queued: this.queued };
  }

  /**
   * Reserves `items` for one batch, or throws RESOURCE_EXHAUSTED (with a retry
   * hint) when the items could be neither run nor queued. `close()` the ticket
   * when the batch ends, however it ends.
   */
  admit(items: number): Ticket {
    const { maxItemsInFlight, maxQueuedItems } = this.limits;
    if (this.inFlight + this.queued + items > maxItemsInFlight + maxQueuedItems) {
      const busy = new ConnectError(
        `the server is busy with other batches (${this.inFlight} items running, ${this.queued} queued; room for ${maxItemsInFlight + maxQueuedItems}); retry in ${BATCH_RETRY_AFTER_MS} ms`,
        Code.ResourceExhausted,
        { "retry-after-ms": String(BATCH_RETRY_AFTER_MS), "retry-after": String(Math.ceil(BATCH_RETRY_AFTER_MS / 1000)) },
      );
      throw withReason(busy, ErrorReason.SERVER_BUSY, { retry_after_ms: String(BATCH_RETRY_AFTER_MS) });
    }
    this.queued += items;
    return new Ticket(this, items);
  }

  /** @internal */ take(ticket: Ticket): boolean {
    if (this.waiters.length > 0 || this.inFlight >= this.limits.maxItemsInFlight) return false;
    this.start(ticket);
    return true;
  }

  /** @internal */ wait(waiter: Waiter): void {
    this.waiters.push(waiter);
  }

  /** @internal */ forget(waiter: Waiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  /** @internal */ finish(): void {
    this.inFlight--;
    this.wake();
  }

  /** @internal */ unreserve(items: number): void {
    this.queued -= items;
  }

  private start(ticket: Ticket): void {
    this.inFlight++;
    this.queued--;
    ticket.unstarted--;
  }

  private wake(): void {
    while (this.waiters.length > 0 && this.inFlight < this.limits.maxItemsInFlight) {
      const waiter = this.waiters.shift()!;
      this.start(waiter.ticket);
      waiter.resolve();
    }
  }
}

/** One admitted batch's reservation. */
export class Ticket implements BatchSlots {
  /** Reserved items not started yet. */
  unstarted: number;
  private running = 0;
  private closed = false;

  constructor(
    private readonly gate: BatchGate,
    items: number,
  ) {
    this.unstarted = items;
  }

  acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.closed || this.unstarted <= 0) return Promise.reject(new ConnectError("a batch asked for more slots than it has items", Code.Internal));
    if (this.gate.take(this)) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        ticket: this,
        resolve: () => {
          signal.removeEventListener("abort", onAbort);
          this.running++;
          resolve();
        },
      };
      const onAbort = () => {
        this.gate.forget(waiter);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.gate.wait(waiter);
    });
  }

  release(): void {
    if (this.running <= 0) return;
    this.running--;
    this.gate.finish();
  }

  /**
   * Returns everything the batch holds. Called when the batch ends or its call
   * is aborted: an item stuck in code that ignores the signal must not keep a
   * slot for good, or enough of them would refuse every batch from then on.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.gate.unreserve(this.unstarted);
    this.unstarted = 0;
    for (; this.running > 0; this.running--) this.gate.finish();
  }
}
