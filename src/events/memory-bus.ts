import type { EventBus, EventInit, EventListener, EventType, RuntimeEvent } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import { context, propagation } from "@opentelemetry/api";
import type { Logger } from "pino";
import { boundEvent, DEFAULT_MAX_EVENT_BYTES, rememberSize } from "./event-size.ts";

/** Settings every bus shares. */
export interface BusLimits {
  /** Largest event, in estimated JSON bytes; a bigger one is cut to size (see boundEvent). */
  maxEventBytes?: number;
}

/**
 * Gives a published event its id and time, and the publishing call's trace so a
 * handler's span can link to it; cuts it to `maxEventBytes` first.
 */
export function stampEvent(published: EventInit, maxEventBytes = DEFAULT_MAX_EVENT_BYTES): RuntimeEvent {
  const { init, bytes } = boundEvent(published, maxEventBytes);
  const event: RuntimeEvent = { ...init, id: randomUUID(), time: new Date() };
  // Nothing is set when tracing is off.
  if (!event.traceparent) {
    const carrier: { traceparent?: string } = {};
    propagation.inject(context.active(), carrier);
    if (carrier.traceparent) event.traceparent = carrier.traceparent;
  }
  rememberSize(event, bytes);
  return event;
}

/**
 * The in-process bus. Each listener runs in its own macrotask after publish
 * returns, so a slow or hanging listener never delays the publisher, and one
 * that throws (or rejects) is logged while the others still run. Every
 * published event is cut to `maxEventBytes` (plugins publish here too).
 */
export class MemoryEventBus implements EventBus {
  private readonly byType = new Map<EventType, Set<EventListener>>();
  private readonly anyType = new Set<EventListener>();

  private readonly maxEventBytes: number;

  constructor(
    private readonly log: Logger,
    limits: BusLimits = {},
  ) {
    this.maxEventBytes = limits.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  }

  publish(init: EventInit): void {
    if (this.hasSubscribers(init.type)) this.dispatch(stampEvent(init, this.maxEventBytes));
  }

  /** Delivers an event that is already stamped (the shared bus's, or one read from another process) to the matching listeners. */
  dispatch(event: RuntimeEvent): void {
    for (const listener of this.anyType) this.deliver(listener, event);
    // A listener on "any" that also named this type gets the event once.
    const typed = this.byType.get(event.type);
    if (typed) for (const listener of typed) if (!this.anyType.has(listener)) this.deliver(listener, event);
  }

  subscribe(types: readonly EventType[] | "any", listener: EventListener): () => void {
    if (types === "any") {
      this.anyType.add(listener);
      return () => void this.anyType.delete(listener);
    }
    for (const type of types) {
      let set = this.byType.get(type);
      if (!set) this.byType.set(type, (set = new Set()));
      set.add(listener);
    }
    return () => {
      for (const type of types) this.byType.get(type)?.delete(listener);
    };
  }

  hasSubscribers(type: EventType): boolean {
    return this.anyType.size > 0 || (this.byType.get(type)?.size ?? 0) > 0;
  }

  private deliver(listener: EventListener, event: RuntimeEvent): void {
    setImmediate(() => {
      try {
        const result = listener(event);
        if (result && typeof result.then === "function") {
          result.then(undefined, (err: unknown) => this.failed(err, event));
        }
      } catch (err) {
        this.failed(err, event);
      }
    });
  }

  private failed(err: unknown, event: RuntimeEvent): void {
    this.log.error({ err, eventType: event.type, eventId: event.id }, "event handler failed");
  }
}
