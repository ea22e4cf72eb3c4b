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
  /** The event's data so far: nearly every event has one data line, kept without an array. */
  private data: string | undefined;
  private moreData: string[] | undefined;
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
      const event = this.line(text, start, end);
      if (event) out.push(event);
      start = end + (cr && text.charCodeAt(end + 1) === 10 ? 2 : 1);
    }
    this.pending = start ? text.slice(start) : text;
    return out;
  }

  // Returns the event a blank line completes, if any. Takes the line as bounds in `text`: the
  // common `data: {...}` line costs one slice, not three (bench:profile -- openai-fast-200).
  private line(text: string, start: number, end: number): SseEvent | undefined {
    if (start === end) {
      const data = this.data;
      if (data === undefined) return undefined;
      const done = { event: this.event, data: this.moreData ? [data, ...this.moreData].join("\n") : data };
      this.event = null;
      this.data = this.moreData = undefined;
      this.dataChars = 0;
      return done;
    }
    if (text.charCodeAt(start) === 58 /* : */) return undefined;
    let colon = text.indexOf(":", start);
    if (colon < 0 || colon > end) colon = end;
    let from = colon + 1;
    if (from < end && text.charCodeAt(from) === 32 /* space */) from++;
    const field = colon - start;
    if (field === 4 && text.startsWith("data", start)) {
      const value = from < end ? text.slice(from, end) : "";
      this.dataChars += value.length;
      if (this.dataChars > MAX_SSE_LINE_CHARS) throw new Error(`event stream: an event's data passed ${MAX_SSE_LINE_CHARS} characters`);
      if (this.data === undefined) this.data = value;
      else (this.moreData ??= []).push(value);
    } else if (field === 5 && text.startsWith("event", start)) {
      this.event = from < end ? text.slice(from, end) : "";
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
