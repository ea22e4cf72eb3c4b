import type { EventHandler, EventListener, RuntimeEvent } from "@qingyu/plugin-api";
import { ROOT_CONTEXT, SpanKind, propagation, trace, type Link } from "@opentelemetry/api";
import type { Telemetry } from "./setup.ts";
import { failSpan } from "./span-iterable.ts";

/**
 * The listener a handler plugin is subscribed with: each run counts its
 * failures and, with tracing on, is a span linked to the call that published
 * the event (a link, not a parent: the call did not wait for it). A failure is
 * rethrown so the bus logs it, as for any listener.
 */
export function handlerListener(name: string, handler: EventHandler, telemetry: Telemetry | undefined): EventListener {
  if (!telemetry) return (event) => handler.handle(event);
  const failed = () => telemetry.instruments.handlerFailures.add(1, { "qingyu.event_handler": name });
  if (!telemetry.tracing) {
    return (event) => {
      try {
        const result = handler.handle(event);
        return result instanceof Promise ? result.catch((err: unknown) => (failed(), Promise.reject(err))) : result;
      } catch (err) {
        failed();
        throw err;
      }
    };
  }
  return (event) =>
    telemetry.tracer.startActiveSpan(
      `event_handler ${name}`,
      {
        kind: SpanKind.CONSUMER,
        links: linkTo(event),
        attributes: { "qingyu.event_handler": name, "qingyu.event.type": event.type, "qingyu.event.id": event.id },
      },
      ROOT_CONTEXT,
      async (span) => {
        try {
          await handler.handle(event);
        } catch (err) {
          failed();
          failSpan(span, err);
          throw err;
        } finally {
          span.end();
        }
      },
    );
}

function linkTo(event: RuntimeEvent): Link[] {
  if (!event.traceparent) return [];
  const spanContext = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, { traceparent: event.traceparent }));
  return spanContext ? [{ context: spanContext }] : [];
}
