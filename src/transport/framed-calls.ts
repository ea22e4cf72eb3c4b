// Calls on the HTTP port served by our own code rather than connect-node's
// handler pipeline: server-streaming methods in the event-stream form (sse.ts)
// and in Connect's streaming protocol (connect-stream.ts), and unary methods in
// Connect's unary protocol (connect-unary.ts), each for its common case. Each call
// runs the hosted service exactly as the Connect adapter does (same admission,
// limits, deadline, call tracking, cancellation); only the framing differs, and
// that is the subclass's.
import { Code, ConnectError } from "@qingyu/plugin-api";
import type { DescMethod } from "@bufbuild/protobuf";
import { createHandlerContext } from "@connectrpc/connect";
import { createMethodSerializationLookup, readAllBytes, type UniversalServerRequest } from "@connectrpc/connect/protocol";
import { parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { untilAborted } from "../abort.ts";
import type { CallInfo } from "../executor/context.ts";
import type { CallTracker } from "./call-tracker.ts";
import { beginCall } from "./connect-adapter.ts";
import { deadlineExceeded, endedEarly } from "./cancel-reason.ts";
import { binaryParseError } from "./binary-parse-status.ts";
import { checkJsonMaps } from "./json-map-scan.ts";
import { checkBinaryMaps } from "./wire-limits.ts";
import { type Preflight, preflightCall } from "./preflight.ts";
import { requestView } from "./request-view.ts";
import { resetConnectWhenStalled } from "./stalled-stream.ts";
import type { CallContext, HostedService } from "./types.ts";
import type { CallLimits } from "./limits.ts";

/** A Node request on either HTTP version. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;
/** A Node response on either HTTP version. */
export type NodeResponse = ServerResponse | Http2ServerResponse;
/** A HandlerContext as connect makes one, with its abort (which also clears its deadline timer). */
type CallHandlerContext = ReturnType<typeof createHandlerContext>;

/** One method served here, with what runs it. */
export interface Served {
  method: DescMethod;
  /** A server-streaming method's messages, or a unary method's one. */
  fn: (req: never, call: CallContext) => AsyncIterable<unknown> | Promise<unknown>;
  track: HostedService["track"];
  serialization: ReturnType<typeof createMethodSerializationLookup>;
}

/** What the served forms share with the rest of the HTTP port. */
export interface FramedCallOptions extends Preflight {
  limits: Preflight["limits"] & CallLimits;
}

/** The request message's bytes, and whether they are protobuf (else JSON). */
export interface RequestMessage {
  bytes: Uint8Array;
  binary: boolean;
}

/** Writes one call's response in a form's framing (a unary call's is one message). */
export interface StreamWriter {
  /** The error the stream ended with, if it did. */
  readonly failure: ConnectError | undefined;
  /** Writes one response message (`bytes` is it serialized); false when the client has not taken the earlier ones yet. */
  message(value: unknown, bytes: Uint8Array): boolean;
  /** Resolves once the client has read what was written; rejects with the signal's reason when it aborts first. */
  drained(signal: AbortSignal): Promise<void>;
  /** Ends the stream with an error. */
  error(error: ConnectError): void;
  /** Ends the response (once), with the call's trailers where the form carries them. */
  end(trailers: Headers): void;
}

// connect's HandlerContext makes a DOMException when aborted without a reason; the call is over, nobody reads it.
const CALL_OVER = new ConnectError("the call is over", Code.Canceled);

/** Serves the methods of one kind a form takes; the form decides which requests are its own and how they are framed. */
export abstract class FramedCalls {
  private readonly served = new Map<string, Served>();

  constructor(
    services: readonly HostedService[],
    private readonly tracker: CallTracker,
    protected readonly options: FramedCallOptions,
    /** The kind of method the form frames. */
    kind: "server_streaming" | "unary" = "server_streaming",
    /** Which of those methods, by path; all of them when absent. */
    paths?: ReadonlySet<string>,
  ) {
    const { maxMessageBytes } = options.limits;
    for (const { service, impl, track } of services) {
      for (const method of service.methods) {
        const path = `/${service.typeName}/${method.name}`;
        const fn = impl[method.localName];
        if ((paths && !paths.has(path)) || method.methodKind !== kind || !fn) continue;
        const serialization = createMethodSerializationLookup(method, undefined, undefined, { readMaxBytes: maxMessageBytes, writeMaxBytes: maxMessageBytes });
        this.served.set(path, { method, fn: fn as Served["fn"], track, serialization });
      }
    }
  }

  /** The name connect's HandlerContext carries for this form. */
  protected abstract readonly protocolName: string;

  /** Whether the request is this form's (its path is one served here). */
  abstract handles(req: NodeRequest): boolean;

  /** The writer of one call's response to the method `served`. */
  protected abstract writer(req: NodeRequest, res: NodeResponse, served: Served): StreamWriter;

  /** The request message, after the form's checks on the request's headers; throws a ConnectError for a malformed one. */
  protected abstract readRequest(ureq: UniversalServerRequest, max: number): Promise<RequestMessage>;

  /** Answers a request that needs no call (an event stream's reconnection); true when it did. */
  protected answeredWithoutCall(_req: NodeRequest, _writer: StreamWriter): boolean {
    return false;
  }

  /** Whether a path is one served here. */
  protected serves(url: string | undefined): boolean {
    return this.served.has(pathOf(url));
  }

  /** Runs the call and streams its messages; never rejects (a failure ends the stream in the form's way). */
  async serve(req: NodeRequest, res: NodeResponse): Promise<void> {
    const served = this.served.get(pathOf(req.url))!;
    const { method } = served;
    const writer = this.writer(req, res, served);
    if (this.answeredWithoutCall(req, writer)) return;
    let hctx: CallHandlerContext | undefined;
    let call: ReturnType<typeof beginCall> | undefined;
    const unary = method.methodKind === "unary";
    // A stream's: aborted once the response is ended, so a client that does not read it has its stream reset
    // after a grace. A unary answer is one write, as under connect-node's handler, which had no such reset either.
    const ended = unary ? undefined : new AbortController();
    try {
      const ureq = requestView(req, res);
      hctx = createHandlerContext({
        service: method.parent,
        method,
        protocolName: this.protocolName,
        requestMethod: ureq.method,
        url: ureq.url,
        timeoutMs: timeoutOf(ureq.header),
        requestSignal: ureq.signal,
        requestHeader: ureq.header,
        contextValues: ureq.contextValues,
      });
      const { input, binary } = await this.admitAndDecode(ureq, hctx, served);
      // Gone or past its deadline while being admitted or read: beginCall would listen to a signal that already fired.
      if (hctx.signal.aborted) throw whyEnded(hctx.signal);
      call = beginCall(hctx, this.tracker, unary ? { ...served.track, longLived: false } : served.track, this.options.limits);
      if (ended) {
        const disarm = resetConnectWhenStalled(hctx, ended.signal, () => undefined);
        // Done once the response is out ('finish') or the connection is gone ('close'):
        // only a response stuck behind a client that does not read is reset.
        res.once("finish", disarm);
        res.once("close", disarm);
      }
      const { signal } = call.ctx;
      if (unary) {
        const output = await untilAborted(served.fn(input as never, call.ctx) as Promise<unknown>, signal);
        writer.message(output, served.serialization.getO(binary).serialize(output as never));
      } else {
        await untilAborted(this.pump(served, binary, served.fn(input as never, call.ctx) as AsyncIterable<unknown>, writer, signal), signal);
      }
    } catch (err) {
      writer.error(this.options.edge.toClient(err, method));
    } finally {
      call?.end();
      hctx?.abort(CALL_OVER);
      writer.end(hctx?.responseTrailer ?? new Headers());
      ended?.abort(writer.failure ?? CALL_OVER);
    }
  }

  /**
   * The checks every call on this port gets before its request is decoded (the
   * pipeline's admission on headers, then size and map bounds), then the decode.
   */
  private async admitAndDecode(ureq: UniversalServerRequest, hctx: CallHandlerContext, { method, serialization }: Served) {
    const { admit, limits } = this.options;
    // The object admitted becomes the call's CallContext (beginCall): admission is memoised per call object.
    const admitted: CallInfo = { header: (name) => ureq.header.get(name) ?? undefined, signal: hctx.signal };
    hctx.values.set(preflightCall, admitted);
    const admission = admit?.(admitted, method.parent.typeName, method.name);
    if (admission) await untilEnded(Promise.resolve(admission), hctx.signal);
    const { bytes, binary } = await untilEnded(this.readRequest(ureq, limits.maxMessageBytes), hctx.signal);
    if (bytes.byteLength <= limits.maxMessageBytes) (binary ? checkBinaryMaps : checkJsonMaps)(method.input, bytes, limits);
    // Connect's own decoding (unknown JSON fields ignored, its error words), and its size check.
    try {
      return { input: serialization.getI(binary).parse(bytes), binary };
    } catch (err) {
      throw binary ? binaryParseError(err, method.input.typeName) : err;
    }
  }

  // Writes each message as the service yields it; the next is asked for only once the
  // client has taken the last (res.write's 'drain'), so a client that stops reading holds the run, not memory.
  private async pump(served: Served, binary: boolean, messages: AsyncIterable<unknown>, writer: StreamWriter, signal: AbortSignal): Promise<void> {
    const iterator = messages[Symbol.asyncIterator]();
    const serialize = served.serialization.getO(binary);
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        if (signal.aborted) throw signal.reason;
        if (!writer.message(next.value, serialize.serialize(next.value as never))) await writer.drained(signal);
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

/** The whole body, at most `max` bytes (a larger one is refused as Connect refuses it). */
export function readBody(ureq: UniversalServerRequest, max: number): Promise<Uint8Array> {
  return readAllBytes(ureq.body as AsyncIterable<Uint8Array>, max, ureq.header.get("content-length"));
}

/** The client's timeout: `connect-timeout-ms`, else `grpc-timeout`, as Connect and gRPC clients send it. */
function timeoutOf(header: Headers): number | undefined {
  const connect = header.get("connect-timeout-ms");
  const parsed =
    connect !== null ? parseConnectTimeout(connect, Number.MAX_SAFE_INTEGER) : parseGrpcTimeout(header.get("grpc-timeout"), Number.MAX_SAFE_INTEGER);
  if (parsed.error) throw new ConnectError(parsed.error.rawMessage, Code.InvalidArgument);
  return parsed.timeoutMs;
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
