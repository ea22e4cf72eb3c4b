import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";

/** How a call takes part in shutdown. */
export interface TrackOptions {
  /** Keeps being served while draining (health checks). */
  servedWhileDraining?: boolean;
  /**
   * Open-ended (subscriptions, watches): never waited for at shutdown. Ended as
   * soon as draining starts, or, when also servedWhileDraining (health watches,
   * which must report NOT_SERVING), when the server finally closes.
   */
  longLived?: boolean;
}

/**
 * Counts calls in flight on both transports, refuses new ones while the server
 * drains, and cancels the stragglers when the grace period ends.
 */
export class CallTracker {
  private readonly active = new Set<AbortController>();
  /** Open-ended calls, with whether they outlive the start of draining. */
  private readonly longLived = new Map<AbortController, boolean>();
  private idleWaiters: Array<() => void> = [];
  private drainingFlag = false;

  get draining(): boolean {
    return this.drainingFlag;
  }

  /** Calls in flight that shutdown waits for. */
  get inFlight(): number {
    return this.active.size;
  }

  /** Registers a call; throws UNAVAILABLE while draining. Returns the function that ends it. */
  begin(controller: AbortController, options: TrackOptions = {}): () => void {
    if (this.drainingFlag && !options.servedWhileDraining) throw shuttingDown();
    if (options.longLived) {
      this.longLived.set(controller, options.servedWhileDraining ?? false);
      return () => void this.longLived.delete(controller);
    }
    this.active.add(controller);
    return () => {
      this.active.delete(controller);
      if (this.active.size === 0 && this.idleWaiters.length) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    };
  }

  /** Stops accepting calls and ends open-ended streams, so their clients reconnect elsewhere. */
  drain(): void {
    this.drainingFlag = true;
    for (const [controller, servedWhileDraining] of this.longLived) if (!servedWhileDraining) controller.abort(shuttingDown());
  }

  /** Resolves true once no call is in flight, or false when `timeoutMs` passes first. */
  waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.active.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Aborts every call still in flight. */
  cancelAll(): void {
    const reason = withReason(new ConnectError("the server shut down before the call finished", Code.Unavailable), ErrorReason.SHUTTING_DOWN);
    for (const controller of this.active) controller.abort(reason);
  }

  /** Ends the open-ended calls still open (health watches), just before the ports close. */
  closeLongLived(): void {
    for (const controller of this.longLived.keys()) controller.abort(shuttingDown());
  }
}

function shuttingDown(): ConnectError {
  return withReason(new ConnectError("the server is shutting down; retry on another replica", Code.Unavailable), ErrorReason.SHUTTING_DOWN);
}
