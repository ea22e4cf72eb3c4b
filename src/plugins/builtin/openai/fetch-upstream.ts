import { collectText, type Upstream, type UpstreamAnswer, UpstreamUnreachable } from "./upstream.ts";

/**
 * The upstream client on runtimes whose fetch is native (Deno): fetch follows
 * redirects and decompresses by itself. Deno's node:http did not always close
 * an aborted request's connection at once, so it is not used there.
 */
export class FetchUpstream implements Upstream {
  async post(url: string, headers: Readonly<Record<string, string>>, body: string, signal: AbortSignal): Promise<UpstreamAnswer> {
    signal.throwIfAborted();
    let res: Response;
    try {
      res = await fetch(url, { method: "POST", headers, body, signal });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new UpstreamUnreachable(err);
    }
    return new FetchAnswer(res);
  }

  close(): void {
    // fetch keeps its own pool, closed with the process.
  }
}

class FetchAnswer implements UpstreamAnswer {
  readonly status: number;

  constructor(private readonly res: Response) {
    this.status = res.status;
  }

  header(name: string): string | undefined {
    return this.res.headers.get(name) ?? undefined;
  }

  async *texts(): AsyncIterable<string> {
    const decoder = new TextDecoder();
    for await (const bytes of this.bytes()) {
      const text = decoder.decode(bytes, { stream: true });
      if (text) yield text;
    }
    const rest = decoder.decode();
    if (rest) yield rest;
  }

  text(limit: number): Promise<string> {
    return collectText(this.bytes(), limit);
  }

  private bytes(): AsyncIterable<Uint8Array> {
    return (this.res.body ?? []) as AsyncIterable<Uint8Array>;
  }

  discard(): void {
    this.res.body?.cancel().catch(() => undefined);
  }
}
