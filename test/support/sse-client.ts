// A client of the HTTP port's Server-Sent Events form (src/transport/sse.ts), as
// a browser's fetch reads it: the response body as it arrives, split into events.

/** One event as a client receives it. */
export interface SseEvent {
  event: string;
  id: string;
  data: string;
}

/** The path of ExecuteStream on the HTTP port, where its SSE form is served too. */
export const EXECUTE_STREAM_PATH = "/qingyu.agent.v1.AgentService/ExecuteStream";

/**
 * Parses the complete events at the start of `text` (lines end in \n, as the
 * server writes them); returns them, how many comment lines came, and what is left.
 */
export function parseEventStream(text: string): { events: SseEvent[]; comments: number; rest: string } {
  const events: SseEvent[] = [];
  let comments = 0;
  let at = 0;
  for (let end = text.indexOf("\n\n", at); end >= 0; end = text.indexOf("\n\n", at)) {
    const fields: Record<string, string> = {};
    for (const line of text.slice(at, end).split("\n")) {
      if (line.startsWith(":")) comments++;
      else {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        fields[name] = name === "data" && fields.data !== undefined ? `${fields.data}\n${value}` : value;
      }
    }
    if (fields.data !== undefined) events.push({ event: fields.event ?? "message", id: fields.id ?? "", data: fields.data });
    at = end + 2;
  }
  return { events, comments, rest: text.slice(at) };
}

/** Reads an event-stream response event by event, as it arrives. */
export class EventStreamReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buffered = "";
  private queue: SseEvent[] = [];
  /** Comment lines (heartbeats) seen so far. */
  comments = 0;

  constructor(res: Response) {
    this.reader = res.body!.getReader();
  }

  /** The next event, or undefined once the stream has ended. */
  async next(): Promise<SseEvent | undefined> {
    while (this.queue.length === 0) {
      const { done, value } = await this.reader.read();
      if (done) return undefined;
      const parsed = parseEventStream(this.buffered + this.decoder.decode(value, { stream: true }));
      this.queue.push(...parsed.events);
      this.comments += parsed.comments;
      this.buffered = parsed.rest;
    }
    return this.queue.shift();
  }

  /** Every remaining event, to the end of the stream. */
  async rest(): Promise<SseEvent[]> {
    const out: SseEvent[] = [];
    for (let e = await this.next(); e; e = await this.next()) out.push(e);
    return out;
  }

  /** Stops reading and closes the connection (what a browser does when the page drops the stream). */
  cancel(): Promise<void> {
    return this.reader.cancel();
  }
}

/** POSTs `body` as JSON asking for an event stream, as a browser's fetch would. */
export function postEventStream(base: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(`${base}${EXECUTE_STREAM_PATH}`, {
    method: "POST",
    headers: { accept: "text/event-stream", "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    signal,
  });
}
