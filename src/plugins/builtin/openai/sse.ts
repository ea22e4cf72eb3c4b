/** One server-sent event: its type (null when the stream did not name one) and its data lines, joined by "\n". */
export interface SseEvent {
  event: string | null;
  data: string;
}

/** Longest line (and longest event's data) kept while waiting for its end: an upstream that never ends one must not fill memory. */
export const MAX_SSE_LINE_CHARS = 8 * 1024 * 1024;

/**
 * Reads a `text/event-stream` body as the HTML standard defines it: lines end
 * in LF, CRLF or CR, wherever the reads split them; `data`
 * lines accumulate, `event` names the type, a blank line dispatches, lines
 * starting with ":" are comments. `id` and `retry` mean nothing to one request
 * and are ignored; an event the stream ends before its blank line is dropped.
 * Synchronous, fed the body's text as it is read (decoded by the upstream
 * client): the reader's loop is the only await per read.
 */
export class SseParser {
  private pending = "";
  private event: string | null = null;
  private data: string[] = [];
  private dataChars = 0;

  /** The events a piece of the body's text completes. */
  push(text: string): SseEvent[] {
    this.pending += text;
    const out = this.lines(false);
    if (this.pending.length > MAX_SSE_LINE_CHARS) throw new Error(`event stream: a line passed ${MAX_SSE_LINE_CHARS} characters without ending`);
    return out;
  }

  /** The events the end of the body completes (a last line ended by a lone CR). */
  end(): SseEvent[] {
    return this.lines(true);
  }

  private lines(atEnd: boolean): SseEvent[] {
    const text = this.pending;
    const out: SseEvent[] = [];
    // Almost every stream ends its lines with LF alone; only one with a CR pays for the general case.
    const hasCr = text.includes("\r");
    let start = 0;
    for (;;) {
      const end = hasCr ? lineEndWithCr(text, start) : text.indexOf("\n", start);
      if (end < 0) break;
      const cr = text.charCodeAt(end) === 13;
      // A CR last in the buffer may be the first half of a CRLF: wait for the next chunk.
      if (cr && end === text.length - 1 && !atEnd) break;
      const event = this.line(text.slice(start, end));
      if (event) out.push(event);
      start = end + (cr && text.charCodeAt(end + 1) === 10 ? 2 : 1);
    }
    this.pending = start ? text.slice(start) : text;
    return out;
  }

  // Returns the event a blank line completes, if any.
  private line(text: string): SseEvent | undefined {
    if (text === "") {
      const done = this.data.length ? { event: this.event, data: this.data.length === 1 ? this.data[0]! : this.data.join("\n") } : undefined;
      this.event = null;
      this.data = [];
      this.dataChars = 0;
      return done;
    }
    if (text.charCodeAt(0) === 58 /* : */) return undefined;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.charCodeAt(0) === 32 /* space */) value = value.slice(1);
    if (field === "data") {
      this.dataChars += value.length;
      if (this.dataChars > MAX_SSE_LINE_CHARS) throw new Error(`event stream: an event's data passed ${MAX_SSE_LINE_CHARS} characters`);
      this.data.push(value);
    } else if (field === "event") {
      this.event = value;
    }
    return undefined;
  }
}

/** Index of the first CR or LF at or after `from`, or -1. */
function lineEndWithCr(text: string, from: number): number {
  const lf = text.indexOf("\n", from);
  const cr = text.indexOf("\r", from);
  if (cr < 0) return lf;
  return lf < 0 || cr < lf ? cr : lf;
}
