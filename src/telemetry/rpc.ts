import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace, type Context, type TextMapGetter } from "@opentelemetry/api";
import type { DescMethod } from "@bufbuild/protobuf";
import { toConnectError } from "../errors.ts";
import type { CallContext, HostedService } from "../transport/types.ts";
import type { Telemetry } from "./setup.ts";

// Connect's Code numbers are gRPC's status codes, so one number serves both transports.
const metadataGetter: TextMapGetter<CallContext> = {
  get: (call, key) => call.header(key),
  keys: () => [],
};

type Impl = (req: never, call: CallContext) => Promise<unknown> | AsyncIterable<unknown>;

/**
 * Wraps a service's methods with a server span per RPC (RPC semantic
 * conventions, continuing the caller's trace from `traceparent`) and the RPC
 * duration and active-stream metrics. The span is the active context while the
 * method runs, so the spans of middleware, store and provider become its children.
 */
export function instrumentService(hosted: HostedService, telemetry: Telemetry): HostedService {
  const impl: HostedService["impl"] = {};
  for (const method of Object.values(hosted.service.method) as DescMethod[]) {
    const fn = hosted.impl[method.localName] as Impl | undefined;
    if (!fn) continue;
    impl[method.localName] = method.methodKind === "server_streaming" ? streaming(method, fn, telemetry) : unary(method, fn, telemetry);
  }
  return { ...hosted, impl };
}

function attributes(method: DescMethod) {
  return { "rpc.system": "grpc", "rpc.service": method.parent.typeName, "rpc.method": method.name };
}

/** Starts the server span under the caller's trace; undefined when tracing is off. */
function startSpan(method: DescMethod, call: CallContext, telemetry: Telemetry): { span: ReturnType<Telemetry["tracer"]["startSpan"]>; ctx: Context } | undefined {
  if (!telemetry.tracing) return undefined;
  const parent = propagation.extract(ROOT_CONTEXT, call, metadataGetter);
  const span = telemetry.tracer.startSpan(`${method.parent.typeName}/${method.name}`, { kind: SpanKind.SERVER, attributes: { ...attributes(method), "net.peer.address": call.peer } }, parent);
  return { span, ctx: trace.setSpan(parent, span) };
}

function finish(method: DescMethod, telemetry: Telemetry, started: number, traced: ReturnType<typeof startSpan>, err: unknown): void {
  const code = err === undefined ? 0 : toConnectError(err).code;
  if (traced) {
    traced.span.setAttribute("rpc.grpc.status_code", code);
    if (err !== undefined) {
      traced.span.recordException(err as Error);
      traced.span.setStatus({ code: SpanStatusCode.ERROR, message: toConnectError(err).rawMessage });
    }
    traced.span.end();
  }
  telemetry.instruments.rpcDuration.record(performance.now() - started, { ...attributes(method), "rpc.grpc.status_code": code });
}

function unary(method: DescMethod, fn: Impl, telemetry: Telemetry): Impl {
  return async (req, call) => {
    const started = performance.now();
    const traced = startSpan(method, call, telemetry);
    try {
      const result = await (traced ? context.with(traced.ctx, () => fn(req, call) as Promise<unknown>) : (fn(req, call) as Promise<unknown>));
      finish(method, telemetry, started, traced, undefined);
      return result;
    } catch (err) {
      finish(method, telemetry, started, traced, err);
      throw err;
    }
  };
}

function streaming(method: DescMethod, fn: Impl, telemetry: Telemetry): Impl {
  return (req, call) => ({
    [Symbol.asyncIterator]() {
      const started = performance.now();
      const traced = startSpan(method, call, telemetry);
      const streams = { "rpc.method": method.name };
      telemetry.instruments.activeStreams.add(1, streams);
      let ended = false;
      const end = (err: unknown) => {
        if (ended) return;
        ended = true;
        telemetry.instruments.activeStreams.add(-1, streams);
        finish(method, telemetry, started, traced, err);
      };
      // Each step runs in the span's context: the method's generator body executes inside next().
      const inner = (traced ? context.with(traced.ctx, () => fn(req, call)) : fn(req, call)) as AsyncIterable<unknown>;
      const it = inner[Symbol.asyncIterator]();
      const step = () => (traced ? context.with(traced.ctx, () => it.next()) : it.next());
      return {
        next: () =>
          step().then(
            (r) => {
              if (r.done) end(undefined);
              return r;
            },
            (err: unknown) => {
              end(err);
              throw err;
            },
          ),
        return: (value?: unknown) => {
          // The client went away: its call's abort reason (CANCELLED, DEADLINE_EXCEEDED) is the outcome.
          end(call.signal.aborted ? call.signal.reason : undefined);
          return it.return ? it.return(value) : Promise.resolve({ done: true as const, value: undefined });
        },
      };
    },
  });
}
