import { Code, ConnectError } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { BatchGate } from "../../src/executor/batch-gate.ts";
import { rejection } from "../support/rejection.ts";

const signal = () => new AbortController().signal;

describe("BatchGate", () => {
  it("admits batches while their items fit in flight plus queued, and refuses the next whole with RESOURCE_EXHAUSTED and a retry hint", () => {
    const gate = new BatchGate({ maxItemsInFlight: 4, maxQueuedItems: 6 });
    gate.admit(5);
    gate.admit(5);
    expect(gate.load).toEqual({ inFlight: 0, queued: 10 });
    let refused: ConnectError | undefined;
    try {
      gate.admit(1);
    } catch (err) {
      refused = err as ConnectError;
    }
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.metadata.get("retry-after-ms")).toBe("1000");
    expect(refused?.metadata.get("retry-after")).toBe("1");
    expect(gate.load).toEqual({ inFlight: 0, queued: 10 }); // a refusal reserves nothing
  });

  it("runs at most maxItemsInFlight across batches and hands freed slots out first come, first served", async () => {
    const gate = new BatchGate({ maxItemsInFlight: 2, maxQueuedItems: 10 });
    const a = gate.admit(3);
    const b = gate.admit(1);
    await a.acquire(signal());
    await a.acquire(signal());
    const order: string[] = [];
    const third = a.acquire(signal()).then(() => order.push("a"));
    const fourth = b.acquire(signal()).then(() => order.push("b"));
    expect(gate.load).toEqual({ inFlight: 2, queued: 2 });
    a.release();
    await third;
    expect(order).toEqual(["a"]);
    a.release();
    await fourth;
    expect(order).toEqual(["a", "b"]);
    expect(gate.load).toEqual({ inFlight: 2, queued: 0 });
  });

  it("stops a waiter when its call is aborted, and close() gives back what the batch reserved and holds", async () => {
    const gate = new BatchGate({ maxItemsInFlight: 1, maxQueuedItems: 10 });
    const stuck = gate.admit(5);
    await stuck.acquire(signal()); // an item stuck in code that ignores the signal
    const waiting = gate.admit(2);
    const controller = new AbortController();
    const wait = waiting.acquire(controller.signal);
    controller.abort(new ConnectError("client cancelled", Code.Canceled));
    expect((await rejection(wait)).code).toBe(Code.Canceled);
    waiting.close();
    expect(gate.load).toEqual({ inFlight: 1, queued: 4 });
    stuck.close(); // its call was aborted: the slot comes back without the item ending
    stuck.release(); // the item's late release changes nothing
    expect(gate.load).toEqual({ inFlight: 0, queued: 0 });
    gate.admit(11); // the whole room is free again
  });

  it("takes the latest limits when configured again (a reload)", () => {
    const gate = new BatchGate({ maxItemsInFlight: 1, maxQueuedItems: 0 });
    expect(() => gate.admit(10)).toThrow();
    gate.configure({ maxItemsInFlight: 1, maxQueuedItems: 9 });
    gate.admit(10);
  });
});
