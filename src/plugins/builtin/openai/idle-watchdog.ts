import { Code, ProviderError } from "@qingyu/plugin-api";
import { PREFIX } from "./errors.ts";

/**
 * Ends a request whose body stopped coming: aborting its signal closes the
 * upstream connection, and its reason is the UNAVAILABLE the caller sees.
 * Retryable only while nothing was yielded: after that the client has part of
 * an answer (the executor would not retry anyway).
 */
export class IdleWatchdog {
  private readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** Set once a delta went to the consumer. */
  yielded = false;

  constructor(
    private readonly ms: number,
    private readonly baseURL: string,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  arm(): void {
    this.disarm();
    // A late arm (generate's header callback) must not leave a timer behind a finished request.
    if (this.closed) return;
    this.timer = setTimeout(() => {
      const message = `${PREFIX}: ${this.baseURL} sent nothing for ${this.ms} ms (idleTimeoutMs); the response stalled`;
      this.controller.abort(new ProviderError(message, Code.Unavailable, !this.yielded));
    }, this.ms);
  }

  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  close(): void {
    this.closed = true;
    this.disarm();
  }
}
