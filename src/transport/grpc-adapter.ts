import { invalidArgument } from "@qingyu/plugin-api";
import { fromBinary, toBinary, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
// Not re-exported by the package index: the part every kind of server call shares.
import type { ServerSurfaceCall } from "@grpc/grpc-js/build/src/server-call.js";
import type { CallTracker } from "./call-tracker.ts";
import { deadlineExceeded, endedEarly } from "./cancel-reason.ts";
import { type ErrorEdge, STATUS_DETAILS_HEADER, statusDetails } from "./edge-error.ts";
import { untilAborted } from "../abort.ts";
import { callDeadline, headerBlockBytes, metadataTooLarge, type CallLimits } from "./limits.ts";
import type { Admit } from "./preflight.ts";
import { checkBinaryMaps, type MapLimits } from "./wire-limits.ts";
import type { CallContext, HostedService } from "./types.ts";
import type { ConnectError } from "@qingyu/plugin-api";
import { requestStream } from "./request-stream.ts";
import { resetGrpcWhenStalled } from "./stalled-stream.ts";

type WritableCall = grpc.ServerWritableStream<Buffer, unknown> | grpc.ServerDuplexStream<Buffer, unknown>;

/**
 * Builds a grpc-js service definition and handlers from a protobuf-es service
 * descriptor, so grpc-js carries the hot path with the same implementation
 * connect-node serves.
 */
export function toGrpcService(
  hostedService: HostedService,
  tracker: CallTracker,
  edge: ErrorEdge,
  limits: CallLimits,
  admit?: Admit,
): { definition: grpc.ServiceDefinition; handlers: grpc.UntypedServiceImplementation } {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  const { service, impl, track } = hostedService;
  for (const method of service.methods) {
    const fn = impl[method.localName];
    if (!fn) throw new Error(`${service.typeName} has no implementation of ${method.name}`);
    const kind = method.methodKind;
    if (kind === "client_streaming") throw new Error(`${kind} methods are not supported`);
    const streaming = kind !== "unary";
    const bidi = kind === "bidi_streaming";
    // Only streams can be open-ended; a unary call is always waited for at shutdown.
    const tracking = streaming ? track : { ...track, longLived: false };
    const longLived = tracking.longLived === true;
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: bidi,
      responseStream: streaming,
      // Requests are parsed in the handler, where a malformed one can get INVALID_ARGUMENT.
      requestSerialize: (message: unknown) => serialize(method.input, message),
      requestDeserialize: (bytes: Buffer): unknown => bytes,
      responseSerialize: (message: unknown) => serialize(method.output, message),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
      originalName: method.localName,
    };
    const parse = (bytes: unknown) => parseRequest(method, bytes, limits);
    const run = (call: ServerSurfaceCall, body: (ctx: GrpcCallContext) => Promise<void>, fail: (s: Partial<grpc.StatusObject>) => void) => {
      const ctx = new GrpcCallContext(call, limits, longLived);
      let end: (() => void) | undefined;
      const finish = (err?: unknown) => {
        ctx.dispose();
        end?.();
        if (err !== undefined) fail(toStatus(err, ctx.trailers(), edge, method));
      };
      try {
        end = tracker.begin(ctx.controller, tracking);
        // grpc-js has no metadata size option; refused here before anything reads it.
        const metadataBytes = headerBlockBytes(call.metadata.toJSON());
        if (metadataBytes > limits.maxMetadataBytes) throw metadataTooLarge(metadataBytes, limits.maxMetadataBytes);
        // Admitted on its headers first: a caller without credentials costs no decode.
        const admitted = admit?.(ctx, service.typeName, method.name);
        const work = admitted ? admitted.then(() => body(ctx)) : body(ctx);
        untilAborted(work, ctx.controller.signal).then(() => finish(), finish);
      } catch (err) {
        finish(err);
      }
    };
    if (bidi)
      handlers[method.localName] = (call: grpc.ServerDuplexStream<Buffer, unknown>) =>
        run(
          call,
          (ctx) => pump(fn(requestStream(call, parse, ctx.signal) as never, ctx) as AsyncIterable<unknown>, call, ctx),
          (s) => endWithError(call, s),
        );
    else if (streaming)
      handlers[method.localName] = (call: grpc.ServerWritableStream<Buffer, unknown>) =>
        run(
          call,
          (ctx) => pump(fn(parse(call.request) as never, ctx) as AsyncIterable<unknown>, call, ctx),
          (s) => endWithError(call, s),
        );
    else
      handlers[method.localName] = (call: grpc.ServerUnaryCall<Buffer, unknown>, callback: grpc.sendUnaryData<unknown>) =>
        run(
          call,
          async (ctx) => callback(null, await (fn(parse(call.request) as never, ctx) as Promise<unknown>), ctx.pendingTrailers),
          (s) => callback(s),
        );
  }
  return { definition, handlers };
}

/**
 * One grpc-js call as a CallContext. A class rather than an object of closures:
 * it is built for every call on the hot path.
 */
class GrpcCallContext implements CallContext {
  readonly controller = new AbortController();
  readonly signal = this.controller.signal;
  readonly deadline: number | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private trailerMetadata: grpc.Metadata | undefined;

  constructor(
    private readonly call: ServerSurfaceCall,
    limits: CallLimits,
    longLived: boolean,
  ) {
    const raw = call.getDeadline();
    // The client's deadline, capped, or the default one; grpc-js itself only enforces the client's.
    this.deadline = callDeadline(typeof raw === "number" ? (Number.isFinite(raw) ? raw : undefined) : raw.getTime(), limits, longLived);
    call.once("cancelled", this.onCancel);
    if (this.deadline !== undefined) this.timer = setTimeout(this.onDeadline, Math.max(0, this.deadline - Date.now()));
  }

  get peer(): string {
    return this.call.getPeer();
  }

  header(name: string): string | undefined {
    const values = this.call.metadata.get(name);
    return values.length ? String(values[0]) : undefined;
  }

  setTrailer(name: string, value: string): void {
    this.trailers().set(name, value);
  }

  fail(error: ConnectError): void {
    this.controller.abort(error);
  }

  /** Trailing metadata to add to, made on first use. */
  trailers(): grpc.Metadata {
    return (this.trailerMetadata ??= new grpc.Metadata());
  }

  /** The trailers set so far, if any: most calls send none. */
  get pendingTrailers(): grpc.Metadata | undefined {
    return this.trailerMetadata;
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.call.removeListener("cancelled", this.onCancel);
  }

  // grpc-js ends an expired call itself and then reports it as cancelled; tell the two apart.
  private readonly onCancel = () => this.controller.abort(endedEarly(this.deadline));
  private readonly onDeadline = () => this.controller.abort(deadlineExceeded());
}

function parseRequest(method: DescMethod, bytes: unknown, limits: MapLimits): unknown {
  // Maps are counted on the wire before the decoder builds them (a refusal is INVALID_ARGUMENT, outside the try).
  checkBinaryMaps(method.input, bytes as Uint8Array, limits);
  try {
    return fromBinary(method.input, bytes as Uint8Array);
  } catch (err) {
    throw invalidArgument("request", `is not a valid ${method.input.typeName} message (${(err as Error).message})`);
  }
}

function serialize(schema: DescMessage, message: unknown): Buffer {
  const bytes = toBinary(schema, message as never);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// Writes each message as the implementation yields it, waiting for the socket
// when the client reads slower than we produce.
async function pump(messages: AsyncIterable<unknown>, call: WritableCall, ctx: GrpcCallContext) {
  const iterator = messages[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (!call.write(next.value)) await drained(call, ctx.signal);
    }
  } catch (err) {
    await iterator.return?.();
    throw err;
  }
  call.end(ctx.pendingTrailers);
}

// The error status waits behind the messages already written; a client that does not read them
// would hold the stream for good, so it is reset if the status is not out within a grace.
function endWithError(call: WritableCall, status: Partial<grpc.StatusObject>): void {
  call.emit("error", status);
  resetGrpcWhenStalled(call, status.code as number | undefined);
}

// Rejects when the call is aborted, which a service may do itself (CallContext.fail) while the client is not reading.
function drained(call: WritableCall, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      call.removeListener("drain", onDrain);
      reject(signal.reason);
    };
    const onDrain = () => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    };
    call.once("drain", onDrain);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function toStatus(err: unknown, trailers: grpc.Metadata, edge: ErrorEdge, method: DescMethod): Partial<grpc.StatusObject> {
  const error = edge.toClient(err, method);
  error.metadata.forEach((value, key) => trailers.set(key, value));
  // grpc-js sends a Buffer under a -bin key as binary metadata; the reason's ErrorInfo travels in it.
  const details = statusDetails(error);
  trailers.set(STATUS_DETAILS_HEADER, Buffer.from(details.buffer, details.byteOffset, details.byteLength));
  return { code: error.code as number as grpc.status, details: error.rawMessage, metadata: trailers };
}
