import type { ConnectError } from "@qingyu/plugin-api";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { codeName } from "../errors.ts";
import { sentReason } from "./edge-error.ts";
import { ResponseWrites } from "./response-writes.ts";
import type { StreamWriter } from "./framed-calls.ts";

/** How often an open stream with nothing to say sends a comment, so proxies (60 s idle limits are common) keep it open. */
const HEARTBEAT_MS = 15_000;

/** One Server-Sent Event; `data` must be a single line (canonical proto JSON is: JSON escapes line breaks). */
export function sseEvent(event: string, id: number, data: string): string {
  return `event: ${event}\nid: ${id}\ndata: ${data}\n\n`;
}

/** What the `error` event's data says: the status code's gRPC name, the message, and the reason every error carries. */
export interface SseErrorData {
  code: string;
  message: string;
  reason: string;
  metadata: Record<string, string>;
}

/** The data of the `error` event that ends a failed stream. */
export function errorData(error: ConnectError): SseErrorData {
  const { reason, metadata } = sentReason(error);
  return { code: codeName(error.code), message: error.rawMessage, reason, metadata };
}

const decoder = new TextDecoder();

/**
 * Writes one call's event stream. The status and headers wait for the first
 * event, so a call that fails before it has any answers with the status its
 * code maps to in Connect (401 for UNAUTHENTICATED...) as well as the event.
 */
export class SseWriter implements StreamWriter {
  private nextId = 1;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly writes: ResponseWrites;
  private ended = false;
  /** The error the stream ended with, if it did. */
  failure: ConnectError | undefined;

  constructor(
    private readonly res: ServerResponse | Http2ServerResponse,
    /** The event name of a response message. */
    private readonly nameOf: (message: unknown) => string,
    private readonly heartbeatMs = HEARTBEAT_MS,
  ) {
    this.writes = new ResponseWrites(res);
  }

  /** Writes a message's event (`json`: the message as JSON); false when the client has not taken the previous ones yet (wait for `drained`). */
  message(value: unknown, json: Uint8Array): boolean {
    return this.write(200, sseEvent(this.nameOf(value), this.nextId++, decoder.decode(json)));
  }

  /** Resolves once the client has read what was written; rejects with the signal's reason when it aborts first. */
  drained(signal: AbortSignal): Promise<void> {
    return this.writes.drained(signal);
  }

  /** Ends the stream with an `error` event (and, before anything was sent, the code's HTTP status and the error's headers). */
  error(error: ConnectError): void {
    this.failure = error;
    if (!this.res.headersSent && !this.writes.gone) error.metadata.forEach((value, name) => this.res.setHeader(name, value));
    this.write(codeToHttpStatus(error.code), sseEvent("error", this.nextId++, JSON.stringify(errorData(error))));
  }

  /** A reconnection to a stream that ended: 204, which tells EventSource to stop. */
  noContent(): void {
    this.ended = true;
    this.res.writeHead(204);
    this.res.end();
  }

  /** Ends the response (once); an event stream has no trailers. */
  end(): void {
    clearInterval(this.heartbeat);
    if (this.ended) return;
    this.ended = true;
    if (this.writes.gone) return;
    // Nothing was sent: the stream ended without an event (a service that yields nothing).
    if (!this.res.headersSent) this.head(200);
    this.res.end();
  }

  private write(status: number, text: string): boolean {
    if (this.ended || this.writes.gone) return true;
    if (!this.res.headersSent) {
      this.head(status);
      this.heartbeat = setInterval(() => {
        // A comment line; skipped while the client is behind, so it cannot grow what is buffered.
        if (!this.writes.behind && !this.writes.gone) this.write(200, ": keep-alive\n\n");
      }, this.heartbeatMs);
      this.heartbeat.unref();
    }
    return this.writes.write(text);
  }

  private head(status: number): void {
    this.res.writeHead(status, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-store",
      // nginx buffers responses unless told not to; an event stream must not be.
      "x-accel-buffering": "no",
    });
  }
}
