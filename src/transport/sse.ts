// The Server-Sent Events form of a server-streaming method on the HTTP port, for
// browsers (fetch, EventSource) and any HTTP client: the same request JSON as
// Connect, answered as `text/event-stream`, one event per response message.
// It runs the hosted service exactly as the Connect adapter does (same admission,
// limits, deadline, call tracking, cancellation); only the framing differs.
import { Code, ConnectError } from "@qingyu/plugin-api";
import type { DescMethod } from "@bufbuild/protobuf";
import { createHandlerContext } from "@connectrpc/connect";
import { createMethodSerializationLookup, readAllBytes, type UniversalServerRequest } from "@connectrpc/connect/protocol";
import { parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { universalRequestFromNodeRequest } from "@connectrpc/connect-node";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { untilAborted } from "../abort.ts";
import type { CallInfo } from "../executor/context.ts";
import type { CallTracker } from "./call-tracker.ts";
import { beginCall } from "./connect-adapter.ts";
import { deadlineExceeded, endedEarly } from "./cancel-reason.ts";
import { checkJsonMaps } from "./json-map-scan.ts";
import { type Preflight, preflightCall } from "./preflight.ts";
import { SseWriter } from "./sse-writer.ts";
import { nodeRequestValues, resetConnectWhenStalled } from "./stalled-stream.ts";
import type { CallContext, HostedService } from "./types.ts";
import type { CallLimits } from "./limits.ts";

/** The methods served as SSE, by path. Server-streaming only. */
const SSE_PATHS = new Set(["/qingyu.agent.v1.AgentService/ExecuteStream"]);

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;
/** A HandlerContext as connect makes one, with its abort (which also clears its deadline timer). */
type CallHandlerContext = ReturnType<typeof createHandlerContext>;

/** One SSE-served method with what runs it. */
interface Served {
  method: DescMethod;
  fn: (req: never, call: CallContext) => AsyncIterable<unknown>;
  track: HostedService["track"];
  serialization: ReturnType<typeof createMethodSerializationLookup>;
}

/** What the SSE form shares with the rest of the HTTP port. */
export interface SseOptions extends Preflight {
  limits: Preflight["limits"] & CallLimits;
  /** How often a comment line keeps an idle stream open through proxies (default 15 s). */
  heartbeatMs?: number;
}

/**
 * Whether `accept` asks for an event stream: a media range of exactly
 * `text/event-stream` (not `*∕*`, which every fetch sends).
 */
export function acceptsEventStream(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(",").some((range) => range.split(";")[0]!.trim().toLowerCase() === "text/event-stream");
}

/**
 * Serves `POST <method path>` with a JSON body, or `GET <method path>?message=<JSON>`
 * (EventSource), to a client that accepts `text/event-stream`.
 */
export class SseStreams {
  private readonly served = new Map<string, Served>();

  constructor(
    services: readonly HostedService[],
    private readonly tracker: CallTracker,
    private readonly options: SseOptions,
  ) {
    const { maxMessageBytes } = options.limits;
    for (const { service, impl, track } of services) {
      for (const method of service.methods) {
        const path = `/${service.typeName}/${method.name}`;
        const fn = impl[method.localName];
        if (!SSE_PATHS.has(path) || method.methodKind !== "server_streaming" || !fn) continue;
        const serialization = createMethodSerializationLookup(method, undefined, undefined, { readMaxBytes: maxMessageBytes, writeMaxBytes: maxMessageBytes });
        this.served.set(path, { method, fn: fn as Served["fn"], track, serialization });
      }
    }
  }

  /** Whether this request is for the SSE form (anything else is connect-node's). */
  handles(req: NodeRequest): boolean {
    if (req.method !== "GET" && req.method !== "POST") return false;
    if (!acceptsEventStream(req.headers.accept)) return false;
    // A Connect, gRPC or gRPC-Web client that also accepts text/event-stream still gets its protocol.
    if (/^application\/(connect\+|grpc)/i.test(req.headers["content-type"] ?? "")) return false;
    return this.served.has(pathOf(req.url));
  }

  /** Runs the call and streams its messages; never rejects (a failure is the stream's last event). */
  async serve(req: NodeRequest, res: NodeResponse): Promise<void> {
    const served = this.served.get(pathOf(req.url))!;
    const { method } = served;
    const writer = new SseWriter(res, this.options.heartbeatMs);
    // A browser's automatic reconnection (EventSource, fetch-event-source) to a stream that ended:
    // 204 tells it to stop, where answering would run the task again.
    if (req.headers["last-event-id"] !== undefined) return writer.noContent();
    let hctx: CallHandlerContext | undefined;
    let call: ReturnType<typeof beginCall> | undefined;
    // Aborted once the response is ended: a client that does not read it has its stream reset after a grace.
    const ended = new AbortController();
    try {
      const ureq = universalRequestFromNodeRequest(req, res as never, undefined, nodeRequestValues(req));
      hctx = createHandlerContext({
        service: method.parent,
        method,
        protocolName: "sse",
        requestMethod: ureq.method,
        url: ureq.url,
        timeoutMs: timeoutOf(ureq.header),
        requestSignal: ureq.signal,
        requestHeader: ureq.header,
        contextValues: ureq.contextValues,
      });
      const input = await this.admitAndDecode(ureq, hctx, served);
      // Gone or past its deadline while being admitted or read: beginCall would listen to a signal that already fired.
      if (hctx.signal.aborted) throw whyEnded(hctx.signal);
      call = beginCall(hctx, this.tracker, served.track, this.options.limits);
      const disarm = resetConnectWhenStalled(hctx, ended.signal, () => undefined);
      // Done once the response is out ('finish') or the connection is gone ('close'):
      // only a response stuck behind a client that does not read is reset.
      res.once("finish", disarm);
      res.once("close", disarm);
      await untilAborted(this.pump(served, served.fn(input as never, call.ctx), writer, call.ctx.signal), call.ctx.signal);
    } catch (err) {
      writer.error(this.options.edge.toClient(err, method));
    } finally {
      call?.end();
      hctx?.abort();
      writer.end();
      ended.abort(writer.failure);
    }
  }

  /**
   * The checks every call on this port gets before its request is decoded (the
   * pipeline's admission on headers, then size and map bounds), then the decode.
   */
  private async admitAndDecode(ureq: UniversalServerRequest, hctx: CallHandlerContext, { method, serialization }: Served): Promise<unknown> {
    const { admit, limits } = this.options;
    if (ureq.method === "GET") refuseCrossSite(ureq.header, new URL(ureq.url).host);
    else refuseNonJson(ureq.header);
    // The object admitted becomes the call's CallContext (beginCall): admission is memoised per call object.
    const admitted: CallInfo = { header: (name) => ureq.header.get(name) ?? undefined, signal: hctx.signal };
    hctx.values.set(preflightCall, admitted);
    const admission = admit?.(admitted, method.parent.typeName, method.name);
    if (admission) await untilEnded(Promise.resolve(admission), hctx.signal);
    const body = ureq.method === "GET" ? queryMessage(ureq.url) : await untilEnded(readBody(ureq, limits.maxMessageBytes), hctx.signal);
    if (body.byteLength <= limits.maxMessageBytes) checkJsonMaps(method.input, body, limits);
    // Connect's own JSON decoding (unknown fields ignored, its error words), and its size check.
    return serialization.getI(false).parse(body);
  }

  // Writes each message as the service yields it; the next is asked for only once the
  // client has taken the last (res.write's 'drain'), so a client that stops reading holds the run, not memory.
  private async pump(served: Served, messages: AsyncIterable<unknown>, writer: SseWriter, signal: AbortSignal): Promise<void> {
    const iterator = messages[Symbol.asyncIterator]();
    const serialize = served.serialization.getO(false);
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        if (signal.aborted) throw signal.reason;
        const json = serialize.serialize(next.value as never);
        if (!writer.event(eventName(served.method, next.value), json)) await writer.drained(signal);
      }
    } catch (err) {
      await iterator.return?.();
      throw err;
    }
  }
}

/** The path of a request URL, without its query. */
function pathOf(url: string | undefined): string {
  const path = url ?? "";
  const query = path.indexOf("?");
  return query < 0 ? path : path.slice(0, query);
}

/**
 * The event name of a response message: the case of its oneof (`started`,
 * `delta`, `completed`), or `message` for a message without one.
 */
export function eventName(method: DescMethod, message: unknown): string {
  const oneof = method.output.oneofs[0];
  const selected = oneof ? (message as Record<string, { case?: string } | undefined>)[oneof.localName]?.case : undefined;
  return selected ?? "message";
}

/** The client's timeout: `connect-timeout-ms`, else `grpc-timeout`, as Connect and gRPC clients send it. */
function timeoutOf(header: Headers): number | undefined {
  const connect = header.get("connect-timeout-ms");
  const parsed =
    connect !== null ? parseConnectTimeout(connect, Number.MAX_SAFE_INTEGER) : parseGrpcTimeout(header.get("grpc-timeout"), Number.MAX_SAFE_INTEGER);
  if (parsed.error) throw new ConnectError(parsed.error.rawMessage, Code.InvalidArgument);
  return parsed.timeoutMs;
}

/**
 * A GET stream from a page of another origin is refused: a GET has no CORS
 * preflight, so any page a user visits could start runs through their browser
 * (with their cookies); this server sends no CORS headers, so no such page could
 * read the answer anyway. A POST with a JSON body is preflighted by the browser.
 */
function refuseCrossSite(header: Headers, host: string): void {
  const site = header.get("sec-fetch-site");
  const origin = header.get("origin");
  const crossSite = site !== null ? site !== "same-origin" && site !== "none" : origin !== null && hostOf(origin) !== host;
  if (crossSite) {
    throw new ConnectError(
      "a GET event stream from another origin is refused (no CORS preflight guards it); POST the request from fetch instead",
      Code.PermissionDenied,
    );
  }
}

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/** A POST's body is the request as JSON; anything else would be a form a page of any origin can post unchecked. */
function refuseNonJson(header: Headers): void {
  const type = header.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new ConnectError(
      `the event stream takes the request as JSON: send content-type: application/json (got ${type ? `"${type}"` : "none"})`,
      Code.InvalidArgument,
    );
  }
  const encoding = header.get("content-encoding");
  if (encoding && encoding !== "identity") {
    throw new ConnectError(`content-encoding "${encoding}" is not supported on the event stream; send the JSON uncompressed`, Code.Unimplemented);
  }
}

/** A GET's request: the JSON in its `message` query parameter (as in Connect's GET requests). */
function queryMessage(url: string): Uint8Array {
  const message = new URL(url).searchParams.get("message");
  if (message === null) {
    throw new ConnectError("a GET event stream takes the request as JSON in the `message` query parameter", Code.InvalidArgument);
  }
  return new TextEncoder().encode(message);
}

/** The whole body, at most `max` bytes (a larger one is refused as Connect refuses it). */
function readBody(ureq: UniversalServerRequest, max: number): Promise<Uint8Array> {
  return readAllBytes(ureq.body as AsyncIterable<Uint8Array>, max, ureq.header.get("content-length"));
}

/** `work`, or why the request ended first (`whyEnded`). */
function untilEnded<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return untilAborted(work, signal).catch((err: unknown) => {
    throw signal.aborted && err === signal.reason ? whyEnded(signal) : err;
  });
}

/** Why a request's HandlerContext aborted, in beginCall's words: its deadline passed, or the client left. */
function whyEnded(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  return reason instanceof ConnectError && reason.code === Code.DeadlineExceeded ? deadlineExceeded() : endedEarly(undefined);
}
