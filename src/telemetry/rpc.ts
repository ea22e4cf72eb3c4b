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
    const m = new MethodAttributes(method);
    // A bidi method's first argument is its request stream: passed through as a request is.
    impl[method.localName] = method.methodKind !== "unary" ? streaming(m, fn, telemetry) : unary(m, fn, telemetry);
  }
  return { ...hosted, impl };
}

/** A method's attributes, and its duration attributes per status code, built once (the metric SDK hashes them on every record). */
class MethodAttributes {
  readonly base: Record<string, string>;
  /** The active-streams gauge's attributes. */
  readonly streams: Record<string, string>;
  readonly spanName: string;
  private readonly byCode = new Map<number, Record<string, string | number>>();
  constructor(readonly method: DescMethod) {
    this.base = { "rpc.system": "grpc", "rpc.service": method.parent.typeName, "rpc.method": method.name };
    this.streams = { "rpc.method": method.name };
    this.spanName = `${method.parent.typeName}/${method.name}`;
  }
  withCode(code: number): Record<string, string | number> {
    let attrs = this.byCode.get(code);
    if (!attrs) this.byCode.set(code, (attrs = { ...this.base, "rpc.grpc.status_code": code }));
    return attrs;
  }
}

/** Starts the server span under the caller's trace; undefined when tracing is off. */
function startSpan(
  { spanName, base }: MethodAttributes,
  call: CallContext,
  telemetry: Telemetry,
): { span: ReturnType<Telemetry["tracer"]["startSpan"]>; ctx: Context } | undefined {
  if (!telemetry.tracing) return undefined;
  const parent = propagation.extract(ROOT_CONTEXT, call, metadataGetter);
  const span = telemetry.tracer.startSpan(spanName, { kind: SpanKind.SERVER, attributes: base }, parent);
  span.setAttribute("net.peer.address", call.peer);
  return { span, ctx: trace.setSpan(parent, span) };
}

function finish(m: MethodAttributes, telemetry: Telemetry, started: number, traced: ReturnType<typeof startSpan>, err: unknown): void {
  const code = err === undefined ? 0 : toConnectError(err).code;
  if (traced) {
    traced.span.setAttribute("rpc.grpc.status_code", code);
    if (err !== undefined) {
      traced.span.recordException(err as Error);
      traced.span.setStatus({ code: SpanStatusCode.ERROR, message: toConnectError(err).rawMessage });
    }
    traced.span.end();
  }
  telemetry.instruments.rpcDuration.record(performance.now() - started, m.withCode(code));
}

function unary(m: MethodAttributes, fn: Impl, telemetry: Telemetry): Impl {
  return async (req, call) => {
    const started = performance.now();
    const traced = startSpan(m, call, telemetry);
    try {
      const result = await (traced ? context.with(traced.ctx, () => fn(req, call) as Promise<unknown>) : (fn(req, call) as Promise<unknown>));
      finish(m, telemetry, started, traced, undefined);
      return result;
    } catch (err) {
      finish(m, telemetry, started, traced, err);
      throw err;
    }
  };
}

function streaming(m: MethodAttributes, fn: Impl, telemetry: Telemetry): Impl {
  return (req, call) => ({
    [Symbol.asyncIterator]() {
      const started = performance.now();
      const traced = startSpan(m, call, telemetry);
      const streams = m.streams;
      telemetry.instruments.activeStreams.add(1, streams);
      let ended = false;
      const end = (err: unknown) => {
        if (ended) return;
        ended = true;
        telemetry.instruments.activeStreams.add(-1, streams);
        finish(m, telemetry, started, traced, err);
      };
      // Each step runs in the span's context: the method's generator body executes inside next().
      const inner = (traced ? context.with(traced.ctx, () => fn(req, call)) : fn(req, call)) as AsyncIterable<unknown>;
      const it = inner[Symbol.asyncIterator]();
      const step = () => (traced ? context.with(traced.ctx, () => it.next()) : it.next());
      const passed = (r: IteratorResult<unknown>) => {
        if (r.done) end(undefined);
        return r;
      };
      const failed = (err: unknown): never => {
        end(err);
        throw err;
      };
      return {
        next: () => step().then(passed, failed),
        return: (value?: unknown) => {
          // The client went away: its call's abort reason (CANCELLED, DEADLINE_EXCEEDED) is the outcome.
          end(call.signal.aborted ? call.signal.reason : undefined);
          return it.return ? it.return(value) : Promise.resolve({ done: true as const, value: undefined });
        },
      };
    },
  });
}
