import type { EventInit, RuntimeEvent } from "@qingyu/plugin-api";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { boundEvent, eventBytes, MAX_ID_CHARS } from "../../src/events/event-size.ts";
import { MemoryEventBus, stampEvent } from "../../src/events/memory-bus.ts";

const MAX = 4096;
/** What the event weighs on the wire: its JSON in UTF-8, as the Redis stream stores it. */
const jsonBytes = (e: RuntimeEvent) => Buffer.byteLength(JSON.stringify(e), "utf8");
const MB = 1_000_000;

describe("boundEvent", () => {
  it("leaves an event within the bound as it is, and estimates its size closely", () => {
    const init: EventInit = {
      type: "AGENT_COMPLETED",
      agentId: "echo",
      sessionId: "s-1",
      userId: "alice",
      data: { callId: "c1", durationMs: 12, model: "echo-1", ok: true },
    };
    const { init: out, bytes } = boundEvent(init, MAX);
    expect(out).toBe(init);
    const actual = jsonBytes(stampEvent(init, MAX));
    expect(bytes).toBeGreaterThanOrEqual(actual * 0.9);
    expect(bytes).toBeLessThanOrEqual(actual * 1.5);
  });

  it("cuts a 4 MB string in data and keeps the type, ids and small fields", () => {
    const init: EventInit = {
      type: "ERROR_OCCURRED",
      agentId: "echo",
      userId: "bob",
      data: { task: "x".repeat(4 * MB), callId: "c2", code: "UNAUTHENTICATED" },
    };
    const event = stampEvent(init, MAX);
    expect(event).toMatchObject({ type: "ERROR_OCCURRED", agentId: "echo", userId: "bob", data: { callId: "c2", code: "UNAUTHENTICATED", truncated: true } });
    expect(event.data.task).toMatch(/^x+… \(cut from 4000000 characters\)$/);
    expect(jsonBytes(event)).toBeLessThanOrEqual(MAX);
    expect(eventBytes(event)).toBeLessThanOrEqual(MAX);
  });

  it("bounds the UTF-8 size, not the character count (multi-byte and escaped characters)", () => {
    for (const fill of ["語", "😀", "\u0001", '"']) {
      const event = stampEvent({ type: "ERROR_OCCURRED", data: { a: fill.repeat(MB / 2), b: fill.repeat(3000), c: 1 } }, MAX);
      expect(jsonBytes(event), JSON.stringify(fill)).toBeLessThanOrEqual(MAX);
      expect(event.data).toMatchObject({ c: 1, truncated: true });
    }
  });

  it("bounds an object of 300,000 keys and deep or cyclic data", () => {
    const wide = Object.fromEntries(Array.from({ length: 300_000 }, (_, i) => [`k${i}`, `v${i}`]));
    const cyclic: Record<string, unknown> = { name: "loop" };
    cyclic.self = cyclic;
    let deep: unknown = "bottom";
    for (let i = 0; i < 100; i++) deep = [deep];
    for (const data of [{ wide }, wide, { cyclic }, { deep }, { list: Array.from({ length: 100_000 }, () => "y".repeat(100)) }]) {
      const event = stampEvent({ type: "MIDDLEWARE_EXECUTED", data }, MAX);
      expect(jsonBytes(event)).toBeLessThanOrEqual(MAX);
      expect(event.data.truncated).toBe(true);
    }
  });

  it("cuts ids longer than 256 characters whatever the event's size", () => {
    const long = "s".repeat(4_194_200);
    const event = stampEvent({ type: "SESSION_CREATED", sessionId: long, userId: "u".repeat(300), agentId: "echo", data: {} }, MAX);
    expect(event.sessionId!.startsWith("s".repeat(MAX_ID_CHARS))).toBe(true);
    expect(event.sessionId!.length).toBeLessThan(MAX_ID_CHARS + 40);
    expect(event.userId!.length).toBeLessThan(MAX_ID_CHARS + 40);
    expect(event.agentId).toBe("echo");
    expect(jsonBytes(event)).toBeLessThanOrEqual(MAX);
    // An id of exactly the limit is kept whole.
    expect(stampEvent({ type: "SESSION_CREATED", sessionId: "s".repeat(MAX_ID_CHARS), data: {} }, MAX).sessionId).toBe("s".repeat(MAX_ID_CHARS));
  });

  it("a larger bound keeps more", () => {
    const event = stampEvent({ type: "ERROR_OCCURRED", data: { message: "m".repeat(20_000) } }, 65_536);
    expect(event.data.message).toBe("m".repeat(20_000));
    expect(event.data.truncated).toBeUndefined();
  });
});

describe("MemoryEventBus and the event bound", () => {
  it("delivers a 4 MB event cut to maxEventBytes", async () => {
    const bus = new MemoryEventBus(pino({ level: "silent" }), { maxEventBytes: MAX });
    const seen = new Promise<RuntimeEvent>((resolve) => bus.subscribe("any", resolve));
    bus.publish({ type: "ERROR_OCCURRED", userId: "bob", data: { task: "t".repeat(4 * MB), code: "INTERNAL" } });
    const event = await seen;
    expect(event).toMatchObject({ type: "ERROR_OCCURRED", userId: "bob", data: { code: "INTERNAL", truncated: true } });
    expect(jsonBytes(event)).toBeLessThanOrEqual(MAX);
  });
});
