/** One answer from the upstream, whichever HTTP client fetched it. */
export interface UpstreamAnswer {
  readonly status: number;
  /** A response header by lower-case name. */
  header(name: string): string | undefined;
  /**
   * The body as UTF-8 text, decompressed, a piece per read as it arrives (a
   * character split between reads comes whole in the later piece). Read once.
   * Decoding is the client's: Node's StringDecoder reads an answer 5× faster
   * than TextDecoder (bench:profile -- openai-fast-200), Deno's TextDecoder is native.
   */
  texts(): AsyncIterable<string>;
  /** The whole body as UTF-8 text; rejects once it passes `limit` bytes. */
  text(limit: number): Promise<string>;
  /** Drops an unread body, closing its connection. */
  discard(): void;
}

/** The HTTP client the provider posts chat-completions requests through. */
export interface Upstream {
  /** Resolves once the headers are in; rejects with UpstreamUnreachable when no answer came, or with the signal's reason. */
  post(url: string, headers: Readonly<Record<string, string>>, body: string, signal: AbortSignal): Promise<UpstreamAnswer>;
  /** Closes pooled connections. */
  close(): void;
}

/** The request failed before any answer: no connection, or the connection failed while sending. */
export class UpstreamUnreachable extends Error {
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = "UpstreamUnreachable";
  }
}

/** A body longer than the reader was willing to keep. */
export class BodyTooLarge extends Error {
  constructor(limit: number) {
    super(`the upstream's answer passed ${limit} bytes`);
    this.name = "BodyTooLarge";
  }
}

/** Reads a body's chunks into text, stopping past `limit` bytes. */
export async function collectText(chunks: AsyncIterable<Uint8Array>, limit: number): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  let size = 0;
  for await (const chunk of chunks) {
    size += chunk.byteLength;
    if (size > limit) throw new BodyTooLarge(limit);
    text += decoder.decode(chunk, { stream: true });
  }
  return text + decoder.decode();
}
