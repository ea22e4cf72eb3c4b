import type { PluginLogger, RuntimeEvent } from "@qingyu/plugin-api";
import { ThrottledWarning } from "../../../events/throttled-warning.ts";
import { postWebhook, retryDelay, webhookMessage, type AttemptOutcome, type WebhookMessage, type WebhookTarget } from "./send.ts";

/** How deliveries are sent, retried and bounded. */
export interface DeliverySettings {
  timeoutMs: number;
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Deliveries waiting (ready or backing off) across endpoints. */
  maxQueue: number;
  /** POSTs in flight at once per endpoint. */
  concurrency: number;
  /** Longest dispose waits before logging what is left. */
  drainTimeoutMs: number;
}

/** The message of an event that will not be delivered (or, at shutdown mid-POST, may not have been). */
const UNDELIVERABLE = "webhook undeliverable";

// A dead receiver fails every delivery; one warning per interval summarizes them.
const WARNING_INTERVAL_MS = 30_000;

interface Endpoint {
  target: WebhookTarget;
  /** Deliveries ready to send, oldest first (a Set: FIFO with O(1) removal of a dropped one). */
  ready: Set<Delivery>;
  sending: number;
  failures: ThrottledWarning;
}

interface Delivery {
  endpoint: Endpoint;
  message: WebhookMessage;
  attempts: number;
  state: "ready" | "waiting" | "sending";
  timer?: ReturnType<typeof setTimeout>;
  /** Cancels the POST in flight, at shutdown. */
  abort?: AbortController;
  last?: AttemptOutcome;
}

/**
 * Sends events to endpoints off the publisher's path: `enqueue` never waits.
 * Every delivery is retried with backoff until it succeeds, is refused, runs
 * out of attempts, is pushed out of the bounded queue or is left at shutdown;
 * in each of the last four cases it is logged at error level with its whole
 * event and endpoint, so it can be replayed. Up to `concurrency` POSTs per
 * endpoint run at once, so a receiver may see events out of order.
 */
export class DeliveryQueue {
  private readonly endpoints: Endpoint[];
  /** Every unfinished delivery, in the order it was created (which is what "oldest" means). */
  private readonly live = new Set<Delivery>();
  private pending = 0;
  private closed = false;
  private disposing: Promise<void> | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    targets: readonly WebhookTarget[],
    private readonly settings: DeliverySettings,
    private readonly logger: PluginLogger,
  ) {
    this.endpoints = targets.map((target) => ({
      target,
      ready: new Set(),
      sending: 0,
      failures: new ThrottledWarning(logger.child({ webhook: target.url }), "webhook delivery failed; will retry", WARNING_INTERVAL_MS),
    }));
  }

  /** Queues the event for each endpoint that takes its type and starts what capacity allows. */
  enqueue(event: RuntimeEvent): void {
    const endpoints = this.endpoints.filter((e) => !e.target.types || e.target.types.has(event.type));
    if (endpoints.length === 0) return;
    const message = webhookMessage(event);
    if (this.closed) {
      // A reload or shutdown can still hand over an event the bus had already scheduled.
      for (const endpoint of endpoints) this.undeliverable({ endpoint, message, attempts: 0, state: "ready" }, "the webhooks handler is closed");
      return;
    }
    for (const endpoint of endpoints) {
      const delivery: Delivery = { endpoint, message, attempts: 0, state: "ready" };
      this.live.add(delivery);
      endpoint.ready.add(delivery);
      this.pending++;
    }
    for (const endpoint of endpoints) this.pump(endpoint);
    this.trim();
  }

  /** Resolves once nothing is queued or in flight. */
  idle(): Promise<void> {
    return this.live.size === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops accepting, waits up to drainTimeoutMs for what is queued, then logs the rest and cancels it. */
  dispose(): Promise<void> {
    this.disposing ??= this.drain();
    return this.disposing;
  }

  private async drain(): Promise<void> {
    this.closed = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.settings.drainTimeoutMs);
    });
    await Promise.race([this.idle(), deadline]);
    clearTimeout(timer);
    for (const delivery of [...this.live]) {
      const reason = delivery.state === "sending" ? "shutdown while sending: the receiver may or may not have it" : "shutdown before delivery";
      this.drop(delivery);
      this.undeliverable(delivery, reason);
      delivery.abort?.abort();
    }
    for (const endpoint of this.endpoints) endpoint.failures.flush();
  }

  private pump(endpoint: Endpoint): void {
    while (endpoint.sending < this.settings.concurrency && endpoint.ready.size > 0) {
      const delivery = endpoint.ready.values().next().value!;
      endpoint.ready.delete(delivery);
      this.pending--;
      delivery.state = "sending";
      endpoint.sending++;
      void this.send(delivery);
    }
  }

  private async send(delivery: Delivery): Promise<void> {
    const { endpoint } = delivery;
    delivery.attempts++;
    delivery.abort = new AbortController();
    const outcome = await postWebhook(endpoint.target, delivery.message, this.settings.timeoutMs, delivery.abort.signal);
    delivery.abort = undefined;
    endpoint.sending--;
    delivery.last = outcome;
    // Not live: shutdown gave it up (and logged it) while it was in flight.
    if (this.live.has(delivery)) {
      if (outcome.ok) {
        this.finish(delivery);
        endpoint.failures.ok("webhook deliveries succeed again");
      } else if (!outcome.retry) {
        this.finish(delivery);
        this.undeliverable(delivery, "refused by the receiver (not retried)");
      } else if (delivery.attempts >= this.settings.maxAttempts) {
        this.finish(delivery);
        this.undeliverable(delivery, `failed ${delivery.attempts} attempts`);
      } else {
        this.retryLater(delivery, outcome);
      }
    }
    this.pump(endpoint);
    this.trim();
    this.checkIdle();
  }

  private retryLater(delivery: Delivery, outcome: Extract<AttemptOutcome, { ok: false }>): void {
    const delay = retryDelay(delivery.attempts, this.settings, outcome.retryAfterMs);
    delivery.endpoint.failures.note(outcome.error, delivery.message.payload, { attempt: delivery.attempts, retryInMs: Math.round(delay) });
    delivery.state = "waiting";
    this.pending++;
    delivery.timer = setTimeout(() => {
      delivery.timer = undefined;
      delivery.state = "ready";
      delivery.endpoint.ready.add(delivery);
      this.pump(delivery.endpoint);
    }, delay);
    delivery.timer.unref?.();
  }

  /** Drops the oldest waiting deliveries beyond maxQueue; in-flight ones are not waiting and are kept. */
  private trim(): void {
    while (this.pending > this.settings.maxQueue) {
      let oldest: Delivery | undefined;
      // In-flight deliveries (at most concurrency per endpoint) are skipped, so the scan stays short.
      for (const delivery of this.live) {
        if (delivery.state !== "sending") {
          oldest = delivery;
          break;
        }
      }
      if (!oldest) return;
      this.drop(oldest);
      this.undeliverable(oldest, `queue full (maxQueue ${this.settings.maxQueue}): oldest delivery dropped`);
    }
    this.checkIdle();
  }

  /** Removes a delivery from wherever it waits. */
  private drop(delivery: Delivery): void {
    this.live.delete(delivery);
    if (delivery.state === "ready") delivery.endpoint.ready.delete(delivery);
    if (delivery.timer) clearTimeout(delivery.timer);
    delivery.timer = undefined;
    if (delivery.state !== "sending") this.pending--;
  }

  private finish(delivery: Delivery): void {
    this.live.delete(delivery);
  }

  private checkIdle(): void {
    if (this.live.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** The one line that says an event did not (or may not) reach an endpoint: enough to replay it. */
  private undeliverable(delivery: Delivery, reason: string): void {
    const last = delivery.last && !delivery.last.ok ? delivery.last : undefined;
    this.logger.error(
      {
        webhook: delivery.endpoint.target.url,
        reason,
        attempts: delivery.attempts,
        status: last?.status,
        err: last?.error,
        event: delivery.message.payload,
        traceparent: delivery.message.traceparent,
      },
      UNDELIVERABLE,
    );
  }
}
