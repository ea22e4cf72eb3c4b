import { Code, ProviderError } from "@qingyu/plugin-api";
import { PREFIX } from "./errors.ts";

/**
 * The signal a request to the upstream runs under: aborted when the caller's
 * is (with its reason), or when the upstream goes quiet, with the UNAVAILABLE
 * the caller sees; either way the upstream connection is closed.
 * Two clocks, one at a time: timeoutMs for the response headers, then
 * idleTimeoutMs for each wait on the body. Retryable only while nothing was
 * yielded: after that the client has part of an answer (the executor would
 * not retry anyway).
 */
export class IdleWatchdog {
  private readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** Set once a delta went to the consumer. */
  yielded = false;

  constructor(
    private readonly caller: AbortSignal,
    private readonly idleMs: number,
    private readonly headersMs: number,
    private readonly baseURL: string,
  ) {
    // One controller for both causes: a second, linked one cost a signal and two listeners a call.
    if (caller.aborted) this.controller.abort(caller.reason);
    else caller.addEventListener("abort", this.follow, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Starts the wait for the response headers. */
  awaitHeaders(): void {
    this.start(this.headersMs, () => `${PREFIX}: request to ${this.baseURL} timed out: no answer within ${this.headersMs} ms (timeoutMs)`);
  }

  /** Starts a wait on the body. */
  arm(): void {
    this.start(this.idleMs, () => `${PREFIX}: ${this.baseURL} sent nothing for ${this.idleMs} ms (idleTimeoutMs); the response stalled`);
  }

  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Call once the request is done: until then the caller's signal holds this one. */
  close(): void {
    this.closed = true;
    this.disarm();
    this.caller.removeEventListener("abort", this.follow);
  }

  private readonly follow = () => {
    this.disarm();
    this.controller.abort(this.caller.reason);
  };

  private start(ms: number, message: () => string): void {
    this.disarm();
    if (this.closed) return;
    this.timer = setTimeout(() => this.controller.abort(new ProviderError(message(), Code.Unavailable, !this.yielded)), ms);
  }
}
