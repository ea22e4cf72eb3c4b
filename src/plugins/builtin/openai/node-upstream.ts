import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { Agent, type Dispatcher } from "undici";
import { BodyTooLarge, type Upstream, type UpstreamAnswer, UpstreamUnreachable } from "./upstream.ts";

// fetch follows up to 20; an API endpoint that needs more than a few is misconfigured.
const MAX_REDIRECTS = 5;

/**
 * The upstream client on Node: undici's pooled `request()`, keep-alive, the
 * body read as the Node stream undici gives. Per request it took 24 µs of
 * client CPU where node:http took 36 µs (16 in flight against
 * bench/fake-openai.ts, a 20-token JSON answer); the `openai` package's client
 * added about 130 µs a call in its own code, and the global fetch several
 * hundred more in web streams and Headers.
 */
export class NodeUpstream implements Upstream {
  // The provider's watchdog times the headers and the body (timeoutMs, idleTimeoutMs): undici's own clocks are off.
  private readonly agent = new Agent({ headersTimeout: 0, bodyTimeout: 0 });

  async post(url: string, headers: Readonly<Record<string, string>>, body: string, signal: AbortSignal): Promise<UpstreamAnswer> {
    let target = new URL(url);
    let sent = headers;
    for (let redirects = 0; ; redirects++) {
      signal.throwIfAborted();
      if (target.protocol !== "http:" && target.protocol !== "https:") {
        throw new UpstreamUnreachable(new TypeError(`unsupported protocol ${target.protocol} in ${target.href}`));
      }
      let res: Dispatcher.ResponseData;
      try {
        res = await this.agent.request({ origin: target.origin, path: target.pathname + target.search, method: "POST", headers: sent, body, signal });
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        throw new UpstreamUnreachable(err);
      }
      const next = redirects < MAX_REDIRECTS ? redirectTarget(target, res.statusCode, res.headers) : undefined;
      if (!next) return new NodeAnswer(res);
      // As fetch does: 307 and 308 repeat the request, and its credentials stay with their origin.
      await res.body.dump().catch(ignore);
      if (next.origin !== target.origin) sent = withoutCredentials(sent);
      target = next;
    }
  }

  close(): void {
    this.agent.destroy().catch(() => undefined);
  }
}

class NodeAnswer implements UpstreamAnswer {
  readonly status: number;
  private readonly body: Readable;

  constructor(private readonly res: Dispatcher.ResponseData) {
    this.status = res.statusCode;
    // An unread body's failure (the connection dropped) must not become an uncaught 'error'.
    res.body.on("error", ignore);
    this.body = decoded(res.body, res.headers);
  }

  header(name: string): string | undefined {
    return headerValue(this.res.headers, name);
  }

  // Not the body's setEncoding: undici's decodes each read alone, cutting a character split between two.
  async *texts(): AsyncIterable<string> {
    const decoder = new StringDecoder("utf8");
    for await (const bytes of this.body as AsyncIterable<Buffer>) {
      const text = decoder.write(bytes);
      if (text) yield text;
    }
    const rest = decoder.end();
    if (rest) yield rest;
  }

  // Events rather than the stream's async iterator: a JSON answer is a read or two, and the iterator costs more than they do.
  text(limit: number): Promise<string> {
    const body = this.body;
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let size = 0;
      let ended = false;
      body.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) {
          body.destroy();
          reject(new BodyTooLarge(limit));
          return;
        }
        parts.push(chunk);
      });
      body.once("end", () => {
        ended = true;
        resolve(parts.length === 1 ? parts[0]!.toString("utf8") : Buffer.concat(parts, size).toString("utf8"));
      });
      body.once("error", reject);
      body.once("close", () => {
        if (!ended) reject(new Error("the upstream closed the connection before its answer ended"));
      });
    });
  }

  discard(): void {
    this.body.destroy();
  }
}

const ignore = () => undefined;

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * Where a 307 or 308 sends the request, when it is to be followed: the method and
 * body stay the same, so the request can simply be sent again. Never from HTTPS to
 * plain HTTP. Other redirects (301, 302, 303) would turn the POST into a GET, which
 * no chat endpoint answers: they are returned as the error they are.
 */
function redirectTarget(from: URL, status: number, headers: IncomingHttpHeaders): URL | undefined {
  if (status !== 307 && status !== 308) return undefined;
  const location = headerValue(headers, "location");
  if (!location) return undefined;
  let to: URL;
  try {
    to = new URL(location, from);
  } catch {
    return undefined;
  }
  if (to.protocol !== "http:" && to.protocol !== "https:") return undefined;
  return from.protocol === "https:" && to.protocol === "http:" ? undefined : to;
}

// Headers that carry credentials: a redirect to another origin does not get them.
const CREDENTIALS = ["authorization", "api-key", "openai-organization", "openai-project", "cookie", "proxy-authorization"];

function withoutCredentials(headers: Readonly<Record<string, string>>): Record<string, string> {
  const out = { ...headers };
  for (const name of CREDENTIALS) delete out[name];
  return out;
}

/** The response body, decompressed as fetch would (the upstream may compress even unasked). */
function decoded(res: Readable, headers: IncomingHttpHeaders): Readable {
  const encoding = String(headerValue(headers, "content-encoding") ?? "")
    .trim()
    .toLowerCase();
  const inflate =
    encoding === "gzip" || encoding === "x-gzip"
      ? createGunzip()
      : encoding === "deflate"
        ? createInflate()
        : encoding === "br"
          ? createBrotliDecompress()
          : undefined;
  if (!inflate) return res;
  // An error on either side ends both: a reader of `inflate` must see the socket's failure too.
  res.on("error", (err) => inflate.destroy(err));
  inflate.on("close", () => res.destroy());
  return res.pipe(inflate);
}
