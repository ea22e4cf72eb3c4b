import { once } from "node:events";
import type { ServerResponse } from "node:http";
import type { NodeResponse } from "./framed-calls.ts";

/**
 * The writes of one streamed response: each says whether the client has taken
 * what came before it, and `drained` waits until it has, so the stream asks
 * its source for more only then (a client that stops reading holds the run,
 * not memory). A write to a client that has gone is dropped.
 */
export class ResponseWrites {
  private needsDrain = false;

  constructor(private readonly res: NodeResponse) {
    // A write to a client that has gone is dropped; its 'error' must not end the process.
    res.on("error", () => undefined);
  }

  /** The response is over: ended, or its connection gone. */
  get gone(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** Whether the client has not yet taken everything written. */
  get behind(): boolean {
    return this.needsDrain;
  }

  /** Writes; false when the client has not taken the earlier writes yet. */
  write(chunk: string | Uint8Array): boolean {
    if (this.gone) return true;
    // Either response type takes both; TypeScript cannot call a union of their overloads.
    const flushed = (this.res as ServerResponse).write(chunk);
    if (!flushed && !this.needsDrain) {
      this.needsDrain = true;
      this.res.once("drain", () => (this.needsDrain = false));
    }
    return flushed;
  }

  /** Resolves once the client has read what was written; rejects with the signal's reason when it aborts first. */
  async drained(signal: AbortSignal): Promise<void> {
    if (!this.needsDrain || this.gone) return;
    try {
      await once(this.res, "drain", { signal });
    } catch (err) {
      throw signal.aborted ? signal.reason : err;
    }
  }
}
