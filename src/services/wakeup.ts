/**
 * The wait of an open-ended stream (subscriptions, health watches): it ends when
 * something changed (`wake`) or when the call's signal aborts. Callers check
 * their state before waiting; nothing runs in between, so no wake is lost.
 */
export class Wakeup {
  private resolve: (() => void) | undefined;

  constructor(signal: AbortSignal) {
    signal.addEventListener("abort", () => this.wake(), { once: true });
  }

  wake(): void {
    const resolve = this.resolve;
    this.resolve = undefined;
    resolve?.();
  }

  wait(): Promise<void> {
    return new Promise((resolve) => (this.resolve = resolve));
  }
}
