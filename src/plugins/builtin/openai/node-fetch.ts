import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";

/** What the `openai` client passes its `fetch`. */
type FetchInit = { method?: string; headers?: unknown; body?: unknown; signal?: AbortSignal | null };

const ignore = () => undefined;

// fetch follows up to 20; an API endpoint that needs more than a few is misconfigured.
const MAX_REDIRECTS = 5;

// Statuses whose Response must have a null body (the Fetch standard's "null body status").
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * The `fetch` the provider gives the `openai` client: node:http(s) with
 * keep-alive agents. The global fetch (undici) costs several hundred µs of CPU a
 * streamed call here, most of it in web streams that carry the body chunk by
 * chunk; so a successful event stream is not put in the Response at all — the
 * Response the client sees has no body, and the provider reads the Node stream
 * itself (`bodyOf`). Every other answer (errors, JSON) gets a web body, as from
 * fetch, so the client reads it exactly as before.
 */
export class NodeFetch {
  private readonly bodies = new WeakMap<Response, Readable>();
  private readonly agents = {
    // lifo: the most recently used socket is the one least likely to have been closed by the upstream.
    "http:": new http.Agent({ keepAlive: true, scheduling: "lifo" }),
    "https:": new https.Agent({ keepAlive: true, scheduling: "lifo" }),
  };

  /** The function to hand the client as its `fetch` option. */
  readonly fetch = (input: string | URL | Request, init?: FetchInit): Promise<Response> => this.send(input, init ?? {});

  /** The event-stream body of a Response this fetch made, undefined when it is in `response.body`. */
  bodyOf(response: Response): Readable | undefined {
    return this.bodies.get(response);
  }

  /** Closes the pooled connections. */
  close(): void {
    for (const agent of Object.values(this.agents)) agent.destroy();
  }

  private send(input: string | URL | Request, init: FetchInit, redirects = 0): Promise<Response> {
    const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
    const signal = init.signal ?? undefined;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const agent = this.agents[url.protocol as keyof NodeFetch["agents"]];
    if (!agent) return Promise.reject(new TypeError(`unsupported protocol ${url.protocol} in ${url.href}`));
    const body = init.body;
    if (body !== undefined && body !== null && typeof body !== "string" && !(body instanceof Uint8Array)) {
      return Promise.reject(new TypeError("the openai provider's fetch sends string or byte bodies only"));
    }
    const headers = headerRecord(init.headers);
    if (body != null) headers["content-length"] = String(Buffer.byteLength(body));
    const module = url.protocol === "https:" ? https : http;

    return new Promise<Response>((resolve, reject) => {
      const req = module.request(url, { method: init.method ?? "GET", headers, agent }, (res) => {
        // From here on a failure is the body's: whoever reads it sees it, and an unread one
        // must not become an uncaught 'error'.
        req.off("error", reject).on("error", ignore);
        res.on("error", ignore);
        // Once the body is done the socket may serve another request: an abort must not reach it.
        res.once("close", () => signal?.removeEventListener("abort", abort));
        try {
          const next = redirects < MAX_REDIRECTS ? redirectTarget(url, res) : undefined;
          if (next) {
            // As fetch does: 307 and 308 repeat the request, and its credentials stay with their origin.
            res.resume();
            resolve(this.send(next, next.origin === url.origin ? init : { ...init, headers: withoutCredentials(headers) }, redirects + 1));
            return;
          }
          resolve(this.toResponse(res));
        } catch (err) {
          res.destroy();
          reject(err);
        }
      });
      // Aborting destroys the request and with it the socket: the upstream sees the connection close.
      const abort = () => {
        req.destroy();
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", abort, { once: true });
      req.on("error", reject);
      req.end(body ?? undefined);
    });
  }

  private toResponse(res: http.IncomingMessage): Response {
    const status = res.statusCode ?? 0;
    const headers = new Headers();
    const raw = res.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    const init = { status, statusText: res.statusMessage ?? "", headers };
    if (NULL_BODY.has(status)) {
      res.resume();
      return new Response(null, init);
    }
    const stream = decoded(res);
    if (status >= 200 && status < 300 && /^text\/event-stream\b/i.test(headers.get("content-type") ?? "")) {
      const response = new Response(null, init);
      this.bodies.set(response, stream);
      return response;
    }
    return new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, init);
  }
}

/**
 * Where a 307 or 308 sends the request, when it is to be followed: the method and
 * body stay the same, so the request can simply be sent again. Never from HTTPS to
 * plain HTTP. Other redirects (301, 302, 303) would turn the POST into a GET, which
 * no chat endpoint answers: they are returned to the client as the error they are.
 */
function redirectTarget(from: URL, res: http.IncomingMessage): URL | undefined {
  if (res.statusCode !== 307 && res.statusCode !== 308) return undefined;
  const location = res.headers.location;
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

function withoutCredentials(headers: Record<string, string>): Record<string, string> {
  const out = { ...headers };
  for (const name of CREDENTIALS) delete out[name];
  return out;
}

/** The response body, decompressed as fetch would (the upstream may compress even unasked). */
function decoded(res: http.IncomingMessage): Readable {
  const encoding = String(res.headers["content-encoding"] ?? "")
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

/** Headers in any form fetch accepts, as node:http takes them. */
function headerRecord(headers: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!headers) return out;
  if (headers instanceof Headers) headers.forEach((value, name) => void (out[name] = value));
  else if (Array.isArray(headers)) for (const [name, value] of headers as [string, string][]) out[name.toLowerCase()] = String(value);
  else for (const [name, value] of Object.entries(headers as Record<string, unknown>)) if (value != null) out[name.toLowerCase()] = String(value);
  return out;
}
