// EventService.subscribe driven directly, with a real MemoryEventBus and a CallContext
// whose `fail` aborts the call as the transports' do.
import { Code, ConnectError, type EventInit, type Middleware, type Principal } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import { SubscribeRequestSchema, type SubscribeResponse } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { Admission } from "../../src/pipeline/admission.ts";
import type { LiveRuntime } from "../../src/plugin-host/live-runtime.ts";
import { eventService, type SubscriberLimits } from "../../src/services/event-service.ts";
import type { CallContext } from "../../src/transport/types.ts";

/** Lets every pending setImmediate (the bus's deliveries) run. */
const settle = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));

/** A runtime whose only part the service reads is its admission; `principal` undefined with `guarded` is an anonymous caller. */
function runtime(guard?: { principal?: Principal }): LiveRuntime {
  const hooks: Middleware[] = guard ? [{ name: "auth", process: (_ctx, next) => next(), admit: async (rpc) => void (rpc.principal = guard.principal) }] : [];
  const gen = { enter() {}, leave() {}, parts: { admission: new Admission(hooks) } };
  return { current: gen } as unknown as LiveRuntime;
}

function callContext() {
  const controller = new AbortController();
  const failures: ConnectError[] = [];
  const call: CallContext = {
    signal: controller.signal,
    deadline: undefined,
    peer: "test",
    header: () => undefined,
    setTrailer: () => undefined,
    fail: (error) => {
      failures.push(error);
      controller.abort(error);
    },
  };
  return { call, failures, controller };
}

/** Starts a subscription and waits until it listens; `next` pulls one event. */
async function subscribe(bus: MemoryEventBus, limits: SubscriberLimits, req: { userId?: string; agentId?: string } = {}, live = runtime()) {
  const { call, failures } = callContext();
  const stream = eventService(bus, live, limits).subscribe(create(SubscribeRequestSchema, req), call)[Symbol.asyncIterator]();
  // The first pull admits and subscribes, then waits for an event.
  const first = stream.next();
  await settle();
  let pending: Promise<IteratorResult<SubscribeResponse>> | undefined = first;
  return {
    failures,
    next: () => {
      const p = pending ?? stream.next();
      pending = undefined;
      return p;
    },
    stop: () => stream.return!(undefined),
  };
}

const bus = () => new MemoryEventBus(pino({ level: "silent" }));
const event = (n: number, extra: Partial<EventInit> = {}): EventInit => ({ type: "AGENT_STARTED", agentId: "echo", data: { n }, ...extra });

describe("EventService.subscribe: a subscriber's backlog", () => {
  it("a subscriber that reads keeps receiving, however many events pass", async () => {
    const b = bus();
    const sub = await subscribe(b, { maxEvents: 10, maxBytes: 1_000_000 });
    for (let n = 0; n < 100; n++) {
      b.publish(event(n));
      expect((await sub.next()).value?.event?.data).toEqual({ n });
    }
    expect(sub.failures).toEqual([]);
    await sub.stop();
  });

  it("more than maxEvents behind ends the call with RESOURCE_EXHAUSTED at once, without another pull", async () => {
    const b = bus();
    const sub = await subscribe(b, { maxEvents: 10, maxBytes: 1_000_000 });
    // The pull already waiting takes the first; ten more fill the backlog; the twelfth overflows it.
    for (let n = 0; n < 11; n++) b.publish(event(n));
    await settle();
    expect(sub.failures).toEqual([]);
    b.publish(event(11));
    await settle();
    // Ended while nobody pulled: what a transport stuck writing to a client that does not read needs.
    expect(sub.failures.map((e) => e.code)).toEqual([Code.ResourceExhausted]);
    expect(sub.failures[0]!.message).toMatch(/fell more than 10 events or 1000000 bytes behind/);
    // The pull that was waiting got the first event; the next one gets the error: the backlog was dropped.
    expect((await sub.next()).value?.event?.data).toEqual({ n: 0 });
    await expect(sub.next()).rejects.toMatchObject({ code: Code.ResourceExhausted });
    expect(b.hasSubscribers("AGENT_STARTED")).toBe(false);
  });

  it("more than maxBytes behind is ended too, well before maxEvents", async () => {
    const b = bus();
    const sub = await subscribe(b, { maxEvents: 1000, maxBytes: 10_000 });
    // Each event ~3 KB (the bus's default bound keeps them whole); the waiting pull takes the first.
    for (let n = 0; n < 4; n++) b.publish(event(n, { data: { n, blob: "b".repeat(3000) } }));
    await settle();
    expect(sub.failures).toEqual([]);
    b.publish(event(4, { data: { n: 4, blob: "b".repeat(3000) } }));
    await settle();
    expect(sub.failures.map((e) => e.code)).toEqual([Code.ResourceExhausted]);
  });

  it("reading frees room in the backlog", async () => {
    const b = bus();
    const sub = await subscribe(b, { maxEvents: 5, maxBytes: 1_000_000 });
    for (let round = 0; round < 10; round++) {
      for (let n = 0; n < 5; n++) b.publish(event(n));
      await settle();
      for (let n = 0; n < 5; n++) await sub.next();
    }
    expect(sub.failures).toEqual([]);
    await sub.stop();
  });
});

describe("EventService.subscribe: whose events", () => {
  const mixed = (b: MemoryEventBus) => {
    b.publish(event(1, { userId: "alice" }));
    b.publish(event(2));
    b.publish(event(3, { userId: "bob" }));
    b.publish(event(4));
  };
  const received = async (sub: Awaited<ReturnType<typeof subscribe>>, count: number) => {
    const out: unknown[] = [];
    for (let i = 0; i < count; i++) out.push((await sub.next()).value?.event?.data.n);
    return out;
  };

  it("an anonymous caller (auth configured, allowAnonymous) sees only events that are nobody's", async () => {
    const b = bus();
    const sub = await subscribe(b, { maxEvents: 100, maxBytes: 1_000_000 }, {}, runtime({ principal: undefined }));
    mixed(b);
    expect(await received(sub, 2)).toEqual([2, 4]);
    await sub.stop();
  });

  it("a user sees their own; an admin sees everyone's", async () => {
    const b = bus();
    const alice = await subscribe(
      b,
      { maxEvents: 100, maxBytes: 1_000_000 },
      {},
      runtime({ principal: { id: "alice", admin: false, roles: [], method: "api-key" } }),
    );
    const root = await subscribe(
      b,
      { maxEvents: 100, maxBytes: 1_000_000 },
      {},
      runtime({ principal: { id: "root", admin: true, roles: [], method: "api-key" } }),
    );
    mixed(b);
    expect(await received(alice, 1)).toEqual([1]);
    expect(await received(root, 4)).toEqual([1, 2, 3, 4]);
    await alice.stop();
    await root.stop();
  });

  it("without auth, user_id filters as before and no user_id sees everything", async () => {
    const b = bus();
    const all = await subscribe(b, { maxEvents: 100, maxBytes: 1_000_000 });
    const bob = await subscribe(b, { maxEvents: 100, maxBytes: 1_000_000 }, { userId: "bob" });
    mixed(b);
    expect(await received(all, 4)).toEqual([1, 2, 3, 4]);
    expect(await received(bob, 1)).toEqual([3]);
    await all.stop();
    await bob.stop();
  });
});
