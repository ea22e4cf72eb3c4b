import type { Logger } from "pino";

/** One warning when Redis starts failing something, a count while it goes on, one line when it stops: an outage fails every attempt alike. */
export class RedisOutage {
  private since: number | undefined;
  private failures = 0;

  constructor(
    private readonly log: Logger,
    private readonly message: string,
  ) {}

  /** `count` failures (a batch of events counts each). */
  note(err: unknown, count = 1): void {
    if (this.since !== undefined) {
      this.failures += count;
      return;
    }
    this.since = Date.now();
    this.failures = count;
    this.log.warn({ err: err instanceof Error ? err.message : String(err) }, this.message);
  }

  /** A success: ends the outage, if there was one. */
  ok(): void {
    if (this.since === undefined) return;
    this.log.info({ outageMs: Date.now() - this.since, failures: this.failures }, `${this.message}: over, Redis answers again`);
    this.since = undefined;
  }
}
