import type { EventBus, EventInit, EventListener, EventType, RuntimeEvent } from "../events.ts";
import type { PluginLogger } from "../observability.ts";

let eventCount = 0;

/** A RuntimeEvent as the bus stamps it (an id and the time), for calling an event handler's `handle` directly. */
export function runtimeEvent(init: EventInit): RuntimeEvent {
  return { ...init, id: `test-event-${++eventCount}`, time: new Date() };
}

/**
 * An in-memory event bus that records every published event in `published`.
 * Subscribers are called after publish returns (in a later task, as the
 * server does); one that throws or rejects is logged at error level.
 * `settled()` waits for the deliveries under way.
 */
export class TestEventBus implements EventBus {
  /** Every published event, stamped, oldest first. */
  readonly published: RuntimeEvent[] = [];
  private readonly listeners = new Set<{ types: readonly EventType[] | "any"; listener: EventListener }>();
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly logger?: PluginLogger) {}

  publish(init: EventInit): void {
    const event = runtimeEvent(init);
    this.published.push(event);
    for (const { types, listener } of this.listeners) {
      if (types !== "any" && !types.includes(event.type)) continue;
      const delivery: Promise<void> = new Promise<void>((resolve) => setTimeout(resolve, 0))
        .then(() => listener(event))
        .then(undefined, (err: unknown) => this.logger?.error({ err, eventType: event.type, eventId: event.id }, "event handler failed"))
        .finally(() => this.pending.delete(delivery));
      this.pending.add(delivery);
    }
  }

  subscribe(types: readonly EventType[] | "any", listener: EventListener): () => void {
    const entry = { types, listener };
    this.listeners.add(entry);
    return () => void this.listeners.delete(entry);
  }

  /** Always true: the test is listening, so publishers never skip building an event. */
  hasSubscribers(_type: EventType): boolean {
    return true;
  }

  /** Resolves once every delivery started so far (and any they started) has finished. */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }
}
