import { SpanStatusCode, context, trace, type Span, type SpanOptions, type Tracer } from "@opentelemetry/api";
import { codeName, toConnectError } from "../errors.ts";

/** What to add to a span as its stream goes by. */
export interface SpanHooks<T> {
  /** Each item, as it passes. */
  item?(span: Span, item: T): void;
  /** Once, before the span ends (err undefined when the stream completed or was abandoned). */
  end?(span: Span, err: unknown): void;
}

/** Marks a span failed: error status, the exception, and the status code the caller got. */
export function failSpan(span: Span, err: unknown): void {
  const error = toConnectError(err);
  span.recordException(err instanceof Error ? err : error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.rawMessage });
  span.setAttribute("qingyu.status", codeName(error.code));
}

/**
 * `open()`'s stream, run inside a span under the context active when iteration
 * starts. Every step runs in the span's context, so what the stream's code
 * does (a nested stage, a store call, a provider request) is its child. The
 * span always ends: on completion, failure, or a consumer that stops early.
 */
export function spanIterable<T>(tracer: Tracer, name: string, options: SpanOptions, open: () => AsyncIterable<T>, hooks: SpanHooks<T> = {}): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const span = tracer.startSpan(name, options, context.active());
      const ctx = trace.setSpan(context.active(), span);
      let ended = false;
      const end = (err: unknown) => {
        if (ended) return;
        ended = true;
        hooks.end?.(span, err);
        if (err !== undefined) failSpan(span, err);
        span.end();
      };
      let it: AsyncIterator<T>;
      try {
        it = context.with(ctx, () => open()[Symbol.asyncIterator]());
      } catch (err) {
        end(err);
        throw err;
      }
      // Made once per stream, not per item: a unary call passes every chunk through every stage.
      const step = () => it.next();
      const passed = (r: IteratorResult<T>) => {
        if (r.done) end(undefined);
        else hooks.item?.(span, r.value);
        return r;
      };
      const failed = (err: unknown): never => {
        end(err);
        throw err;
      };
      return {
        next: () => context.with(ctx, step).then(passed, failed),
        return: (value?: unknown) => {
          end(undefined);
          return it.return ? context.with(ctx, () => it.return!(value)) : Promise.resolve({ done: true as const, value: undefined as T });
        },
      };
    },
  };
}
