import { fromBinary, toBinary, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { Code, ConnectError, invalidArgument, toConnectError } from "../errors.ts";
import type { CallTracker } from "./call-tracker.ts";
import { deadlineExceeded, endedEarly } from "./cancel-reason.ts";
import type { CallContext, HostedService } from "./types.ts";

type AnyCall = grpc.ServerUnaryCall<Buffer, unknown> | grpc.ServerWritableStream<Buffer, unknown>;

/**
 * Builds a grpc-js service definition and handlers from a protobuf-es service
 * descriptor, so grpc-js carries the hot path with the same implementation
 * connect-node serves.
 */
export function toGrpcService(
  hostedService: HostedService,
  tracker: CallTracker,
  log: Logger,
): { definition: grpc.ServiceDefinition; handlers: grpc.UntypedServiceImplementation } {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  const { service, impl, track } = hostedService;
  for (const method of service.methods) {
    const fn = impl[method.localName];
    if (!fn) throw new Error(`${service.typeName} has no implementation of ${method.name}`);
    const streaming = method.methodKind === "server_streaming";
    if (!streaming && method.methodKind !== "unary") throw new Error(`${method.methodKind} methods are not supported`);
    // Only streams can be open-ended; a unary call is always waited for at shutdown.
    const tracking = streaming ? track : { ...track, longLived: false };
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: false,
      responseStream: streaming,
      // Requests are parsed in the handler, where a malformed one can get INVALID_ARGUMENT.
      requestSerialize: (message: unknown) => serialize(method.input, message),
      requestDeserialize: (bytes: Buffer): unknown => bytes,
      responseSerialize: (message: unknown) => serialize(method.output, message),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
      originalName: method.localName,
    };
    const run = (call: AnyCall, body: (req: never, ctx: CallContext) => Promise<void>, fail: (s: Partial<grpc.StatusObject>) => void) => {
      const { ctx, controller, trailers, dispose } = callContext(call);
      let end: (() => void) | undefined;
      const finish = (err?: unknown) => {
        dispose();
        end?.();
        if (err !== undefined) fail(toStatus(err, trailers, log, method));
      };
      try {
        end = tracker.begin(controller, tracking);
        const req = parseRequest(method, call.request);
        body(req as never, ctx).then(() => finish(), finish);
      } catch (err) {
        finish(err);
      }
    };
    handlers[method.localName] = streaming
      ? (call: grpc.ServerWritableStream<Buffer, unknown>) =>
          run(call, (req, ctx) => pump(fn(req, ctx) as AsyncIterable<unknown>, call, ctx), (s) => call.emit("error", s))
      : (call: grpc.ServerUnaryCall<Buffer, unknown>, callback: grpc.sendUnaryData<unknown>) =>
          run(call, async (req, ctx) => {
            const res = await (fn(req, ctx) as Promise<unknown>);
            callback(null, res, (ctx as GrpcCallContext).trailers);
          }, (s) => callback(s));
  }
  return { definition, handlers };
}

interface GrpcCallContext extends CallContext {
  trailers: grpc.Metadata;
}

function callContext(call: AnyCall) {
  const controller = new AbortController();
  const trailers = new grpc.Metadata();
  const raw = call.getDeadline();
  const deadline = typeof raw === "number" ? (Number.isFinite(raw) ? raw : undefined) : raw.getTime();
  // grpc-js ends an expired call itself and then reports it as cancelled; tell the two apart.
  const onCancel = () => controller.abort(endedEarly(deadline));
  call.once("cancelled", onCancel);
  const timer =
    deadline === undefined
      ? undefined
      : setTimeout(() => controller.abort(deadlineExceeded()), Math.max(0, deadline - Date.now()));
  const ctx: GrpcCallContext = {
    signal: controller.signal,
    deadline,
    trailers,
    get peer() {
      return call.getPeer();
    },
    header(name) {
      const values = call.metadata.get(name);
      return values.length ? String(values[0]) : undefined;
    },
    setTrailer(name, value) {
      trailers.set(name, value);
    },
  };
  const dispose = () => {
    if (timer) clearTimeout(timer);
    call.removeListener("cancelled", onCancel);
  };
  return { ctx, controller, trailers, dispose };
}

function parseRequest(method: DescMethod, bytes: unknown): unknown {
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
async function pump(messages: AsyncIterable<unknown>, call: grpc.ServerWritableStream<Buffer, unknown>, ctx: CallContext) {
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
  call.end((ctx as GrpcCallContext).trailers);
}

function drained(call: grpc.ServerWritableStream<Buffer, unknown>, signal: AbortSignal): Promise<void> {
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

function toStatus(err: unknown, trailers: grpc.Metadata, log: Logger, method: DescMethod): Partial<grpc.StatusObject> {
  const error = toConnectError(err);
  if (error.code === Code.Internal && !(err instanceof ConnectError)) {
    log.error({ err, method: `${method.parent.typeName}/${method.name}` }, "unhandled error in service method");
  }
  error.metadata.forEach((value, key) => trailers.set(key, value));
  return { code: error.code as number as grpc.status, details: error.rawMessage, metadata: trailers };
}
