// Finished spans as compact plain data, for handing to the export worker: one
// array per span (structured clone copies arrays of primitives fast, where the
// SDK's span objects would drag their processor, resource and tracer along),
// and back into the ReadableSpan the OTLP and console exporters read.
import type { Attributes, HrTime, Link, SpanContext } from "@opentelemetry/api";
import { TraceState } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace-base";

/** A span on the wire (see encodeSpan for the order of its fields). */
export type WireSpan = unknown[];

/** An instrumentation scope on the wire: name, version, schema URL. */
export type WireScope = [string, string | undefined, string | undefined];

/** One hand-off to the worker: the spans, the scopes they name by index, and the resource when it is new. */
export interface WireBatch {
  spans: WireSpan[];
  scopes: WireScope[];
  resource?: { attributes: Attributes; schemaUrl?: string };
}

type WireLink = [string, string, number, string | undefined, boolean | undefined, Attributes | undefined, number | undefined];

/** Encodes one span; `scope` is the index of its instrumentation scope in the batch's table. */
export function encodeSpan(span: ReadableSpan, scope: number): WireSpan {
  const ctx = span.spanContext();
  const parent = span.parentSpanContext;
  return [
    ctx.traceId,
    ctx.spanId,
    ctx.traceFlags,
    ctx.traceState?.serialize(),
    parent?.spanId,
    parent?.isRemote,
    span.name,
    span.kind,
    span.startTime[0],
    span.startTime[1],
    span.endTime[0],
    span.endTime[1],
    span.attributes,
    span.status.code,
    span.status.message,
    // Most spans have none: 0 is cheaper to clone than an empty array.
    span.events.length ? span.events : 0,
    span.links.length ? span.links.map(encodeLink) : 0,
    span.droppedAttributesCount,
    span.droppedEventsCount,
    span.droppedLinksCount,
    scope,
  ];
}

function encodeLink(link: Link): WireLink {
  const c = link.context;
  return [c.traceId, c.spanId, c.traceFlags, c.traceState?.serialize(), c.isRemote, link.attributes, link.droppedAttributesCount];
}

function decodeLink([traceId, spanId, traceFlags, traceState, isRemote, attributes, droppedAttributesCount]: WireLink): Link {
  return {
    context: { traceId, spanId, traceFlags, traceState: traceState ? new TraceState(traceState) : undefined, isRemote },
    attributes,
    droppedAttributesCount,
  };
}

const duration = (start: HrTime, end: HrTime): HrTime => {
  let s = end[0] - start[0];
  let ns = end[1] - start[1];
  if (ns < 0) {
    s -= 1;
    ns += 1e9;
  }
  return [s, ns];
};

/** Rebuilds a span for the exporters (in the worker), under the given resource and scope table. */
export function decodeSpan(w: WireSpan, resource: Resource, scopes: ReadableSpan["instrumentationScope"][]): ReadableSpan {
  const traceId = w[0] as string;
  const traceState = w[3] as string | undefined;
  const context: SpanContext = { traceId, spanId: w[1] as string, traceFlags: w[2] as number, traceState: traceState ? new TraceState(traceState) : undefined };
  const parentSpanId = w[4] as string | undefined;
  const startTime: HrTime = [w[8] as number, w[9] as number];
  const endTime: HrTime = [w[10] as number, w[11] as number];
  return {
    name: w[6] as string,
    kind: w[7] as number,
    spanContext: () => context,
    parentSpanContext: parentSpanId ? { traceId, spanId: parentSpanId, traceFlags: context.traceFlags, isRemote: w[5] as boolean | undefined } : undefined,
    startTime,
    endTime,
    duration: duration(startTime, endTime),
    ended: true,
    attributes: w[12] as Attributes,
    status: { code: w[13] as number, message: w[14] as string | undefined },
    events: (w[15] || []) as TimedEvent[],
    links: w[16] ? (w[16] as WireLink[]).map(decodeLink) : [],
    droppedAttributesCount: w[17] as number,
    droppedEventsCount: w[18] as number,
    droppedLinksCount: w[19] as number,
    resource,
    instrumentationScope: scopes[w[20] as number]!,
  };
}
