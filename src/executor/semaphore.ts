/** A counting semaphore: at most `limit` holders; waiters are served in arrival order. */
export class Semaphore {
  private held = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  /** Resolves once a slot is held; pair with release(). */
  acquire(): Promise<void> {
    if (this.held < this.limit) {
      this.held++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    // The slot passes straight to the next waiter: no count change, no overtaking.
    if (next) next();
    else this.held--;
  }
}
