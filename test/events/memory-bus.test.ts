import type { EventType, RuntimeEvent } from "@qingyu/plugin-api";
import { describe, it, expect } from "vitest";
import pino from "pino";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";

/** A bus whose logger writes JSON lines into `lines`. */
function busWithLog(): { bus: MemoryEventBus; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
  return { bus: new MemoryEventBus(pino({ level: "info" }, destination)), lines };
}

const silentBus = () => new MemoryEventBus(pino({ level: "silent" }));

/** Resolves with the next event the bus delivers for `types`. */
function nextEvent(bus: MemoryEventBus, types: readonly EventType[] | "any"): Promise<RuntimeEvent> {
  return new Promise((resolve) => {
    const off = bus.subscribe(types, (event) => {
      off();
      resolve(event);
    });
  });
}

/** Lets every pending setImmediate (and microtask) run. */
const settle = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));

describe("MemoryEventBus", () => {
  it("delivers to subscribers of the event's type only", async () => {
    const bus = silentBus();
    const started: RuntimeEvent[] = [];
    const deleted: RuntimeEvent[] = [];
    bus.subscribe(["AGENT_STARTED"], (e) => void started.push(e));
    bus.subscribe(["SESSION_DELETED"], (e) => void deleted.push(e));
    bus.publish({ type: "AGENT_STARTED", agentId: "a", data: { n: 1 } });
    await settle();
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({ type: "AGENT_STARTED", agentId: "a", data: { n: 1 } });
    expect(deleted).toHaveLength(0);
  });

  it("a subscriber to several types gets each of them", async () => {
    const bus = silentBus();
    const seen: EventType[] = [];
    bus.subscribe(["AGENT_STARTED", "AGENT_COMPLETED"], (e) => void seen.push(e.type));
    bus.publish({ type: "AGENT_STARTED", data: {} });
    bus.publish({ type: "ERROR_OCCURRED", data: {} });
    bus.publish({ type: "AGENT_COMPLETED", data: {} });
    await settle();
    expect(seen).toEqual(["AGENT_STARTED", "AGENT_COMPLETED"]);
  });

  it('a subscriber to "any" gets every type', async () => {
    const bus = silentBus();
    const seen: EventType[] = [];
    bus.subscribe("any", (e) => void seen.push(e.type));
    bus.publish({ type: "SESSION_CREATED", data: {} });
    bus.publish({ type: "CHECKPOINT_SAVED", data: {} });
    await settle();
    expect(seen).toEqual(["SESSION_CREATED", "CHECKPOINT_SAVED"]);
  });

  it("stamps each event with a fresh id and the publish time", async () => {
    const bus = silentBus();
    const seen: RuntimeEvent[] = [];
    bus.subscribe("any", (e) => void seen.push(e));
    const before = Date.now();
    bus.publish({ type: "AGENT_STARTED", data: {} });
    bus.publish({ type: "AGENT_STARTED", data: {} });
    const after = Date.now();
    await settle();
    expect(seen).toHaveLength(2);
    for (const event of seen) {
      expect(typeof event.id).toBe("string");
      expect(event.id).not.toBe("");
      expect(event.time).toBeInstanceOf(Date);
      expect(event.time.getTime()).toBeGreaterThanOrEqual(before);
      expect(event.time.getTime()).toBeLessThanOrEqual(after);
    }
    expect(seen[0]!.id).not.toBe(seen[1]!.id);
  });

  it("all subscribers of one publish see the same event id", async () => {
    const bus = silentBus();
    const a = nextEvent(bus, "any");
    const b = nextEvent(bus, ["AGENT_STARTED"]);
    bus.publish({ type: "AGENT_STARTED", data: {} });
    expect((await a).id).toBe((await b).id);
  });

  it("publish returns before any handler runs", async () => {
    const bus = silentBus();
    let ran = false;
    bus.subscribe("any", () => {
      ran = true;
    });
    bus.publish({ type: "AGENT_STARTED", data: {} });
    expect(ran).toBe(false);
    await settle();
    expect(ran).toBe(true);
  });

  it("a handler that never resolves blocks neither publish nor the other handlers", async () => {
    const bus = silentBus();
    let hungCalls = 0;
    bus.subscribe("any", () => {
      hungCalls++;
      return new Promise<void>(() => {});
    });
    const received: number[] = [];
    bus.subscribe(["AGENT_STARTED"], (e) => void received.push(e.data.n as number));
    bus.publish({ type: "AGENT_STARTED", data: { n: 1 } });
    bus.publish({ type: "AGENT_STARTED", data: { n: 2 } });
    await settle();
    expect(hungCalls).toBe(2);
    expect(received).toEqual([1, 2]);
  });

  it("a handler that throws is logged with the event type, and the others still get the event", async () => {
    const { bus, lines } = busWithLog();
    bus.subscribe("any", () => {
      throw new Error("handler exploded");
    });
    const other = nextEvent(bus, ["SESSION_CREATED"]);
    bus.publish({ type: "SESSION_CREATED", sessionId: "s1", data: {} });
    const event = await other;
    await settle();
    expect(event.sessionId).toBe("s1");
    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ eventType: "SESSION_CREATED", eventId: event.id });
    expect((errors[0]!.err as { message: string }).message).toBe("handler exploded");
  });

  it("a handler that rejects is logged with the event type, and the others still get the event", async () => {
    const { bus, lines } = busWithLog();
    bus.subscribe(["ERROR_OCCURRED"], async () => {
      throw new Error("async handler exploded");
    });
    const other = nextEvent(bus, "any");
    bus.publish({ type: "ERROR_OCCURRED", data: {} });
    const event = await other;
    await settle();
    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ eventType: "ERROR_OCCURRED", eventId: event.id });
    expect((errors[0]!.err as { message: string }).message).toBe("async handler exploded");
  });

  it("unsubscribe stops delivery to that handler only", async () => {
    const bus = silentBus();
    const a: number[] = [];
    const b: number[] = [];
    const offA = bus.subscribe(["AGENT_STARTED"], (e) => void a.push(e.data.n as number));
    bus.subscribe(["AGENT_STARTED"], (e) => void b.push(e.data.n as number));
    bus.publish({ type: "AGENT_STARTED", data: { n: 1 } });
    await settle();
    offA();
    bus.publish({ type: "AGENT_STARTED", data: { n: 2 } });
    await settle();
    expect(a).toEqual([1]);
    expect(b).toEqual([1, 2]);
  });

  it('unsubscribe works for an "any" subscriber and for every type of a multi-type one', async () => {
    const bus = silentBus();
    const seen: string[] = [];
    const offAny = bus.subscribe("any", (e) => void seen.push(`any:${e.type}`));
    const offTyped = bus.subscribe(["AGENT_STARTED", "AGENT_COMPLETED"], (e) => void seen.push(`typed:${e.type}`));
    offAny();
    offTyped();
    bus.publish({ type: "AGENT_STARTED", data: {} });
    bus.publish({ type: "AGENT_COMPLETED", data: {} });
    await settle();
    expect(seen).toEqual([]);
  });

  it("hasSubscribers reflects typed and any subscriptions, and unsubscribes", () => {
    const bus = silentBus();
    expect(bus.hasSubscribers("AGENT_STARTED")).toBe(false);
    const off = bus.subscribe(["AGENT_STARTED"], () => {});
    expect(bus.hasSubscribers("AGENT_STARTED")).toBe(true);
    expect(bus.hasSubscribers("SESSION_CREATED")).toBe(false);
    off();
    expect(bus.hasSubscribers("AGENT_STARTED")).toBe(false);
    const offAny = bus.subscribe("any", () => {});
    expect(bus.hasSubscribers("SESSION_CREATED")).toBe(true);
    offAny();
    expect(bus.hasSubscribers("SESSION_CREATED")).toBe(false);
  });

  it("publishing with no subscribers is harmless", async () => {
    const bus = silentBus();
    expect(() => bus.publish({ type: "AGENT_STARTED", data: {} })).not.toThrow();
  });
});
