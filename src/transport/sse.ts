// The Server-Sent Events form of a server-streaming method on the HTTP port, for
// browsers (fetch, EventSource) and any HTTP client: the same request JSON as
// Connect, answered as `text/event-stream`, one event per response message.
// It runs the hosted service as every form in framed-calls.ts does; only the framing differs.
import { Code, ConnectError } from "@qingyu/plugin-api";
import type { DescMethod } from "@bufbuild/protobuf";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import type { HostedService } from "./types.ts";
import type { CallTracker } from "./call-tracker.ts";
import {
  type NodeRequest,
  type NodeResponse,
  readBody,
  type RequestMessage,
  type Served,
  FramedCalls,
  type FramedCallOptions,
  type StreamWriter,
} from "./framed-calls.ts";
import { SseWriter } from "./sse-writer.ts";

/** The methods served as SSE, by path. Server-streaming only. */
const SSE_PATHS = new Set(["/qingyu.agent.v1.AgentService/ExecuteStream"]);

/** What the SSE form shares with the rest of the HTTP port. */
export interface SseOptions extends FramedCallOptions {
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
export class SseStreams extends FramedCalls {
  protected readonly protocolName = "sse";

  constructor(services: readonly HostedService[], tracker: CallTracker, options: SseOptions) {
    super(services, tracker, options, "server_streaming", SSE_PATHS);
  }

  /** Whether this request is for the SSE form (anything else is connect-node's). */
  handles(req: NodeRequest): boolean {
    if (req.method !== "GET" && req.method !== "POST") return false;
    if (!acceptsEventStream(req.headers.accept)) return false;
    // A Connect, gRPC or gRPC-Web client that also accepts text/event-stream still gets its protocol.
    if (/^application\/(connect\+|grpc)/i.test(req.headers["content-type"] ?? "")) return false;
    return this.serves(req.url);
  }

  protected writer(_req: NodeRequest, res: NodeResponse, { method }: Served): StreamWriter {
    return new SseWriter(res, (message) => eventName(method, message), (this.options as SseOptions).heartbeatMs);
  }

  // A browser's automatic reconnection (EventSource, fetch-event-source) to a stream that ended:
  // 204 tells it to stop, where answering would run the task again.
  protected answeredWithoutCall(req: NodeRequest, writer: StreamWriter): boolean {
    if (req.headers["last-event-id"] === undefined) return false;
    (writer as SseWriter).noContent();
    return true;
  }

  protected async readRequest(ureq: UniversalServerRequest, max: number): Promise<RequestMessage> {
    if (ureq.method === "GET") {
      refuseCrossSite(ureq.header, new URL(ureq.url).host);
      return { bytes: queryMessage(ureq.url), binary: false };
    }
    refuseNonJson(ureq.header);
    return { bytes: await readBody(ureq, max), binary: false };
  }
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
