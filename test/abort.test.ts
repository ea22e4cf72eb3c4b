import { getEventListeners } from "node:events";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { linkSignals } from "../src/abort.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

describe("linkSignals", () => {
  it("aborts with the reason of the first source to abort, once", () => {
    const [a, b] = [new AbortController(), new AbortController()];
    const linked = linkSignals(a.signal, b.signal);
    expect(linked.signal.aborted).toBe(false);
    b.abort(new Error("b went"));
    a.abort(new Error("a went"));
    expect(linked.signal.reason).toEqual(new Error("b went"));
  });

  it("starts aborted when a source already is", () => {
    const a = new AbortController();
    a.abort("early");
    expect(linkSignals(new AbortController().signal, a.signal).signal.reason).toBe("early");
  });

  it("after unlink, no source aborts it and none keeps a listener", () => {
    const [a, b] = [new AbortController(), new AbortController()];
    const linked = linkSignals(a.signal, b.signal);
    linked.unlink();
    a.abort();
    expect(linked.signal.aborted).toBe(false);
    expect(getEventListeners(b.signal, "abort")).toHaveLength(0);
  });

  it("a linked signal that something listens to is collected once unlinked, even when a source lives on", async () => {
    const longLived = new AbortController();
    let ref: WeakRef<AbortSignal> | undefined;
    (() => {
      const linked = linkSignals(longLived.signal, new AbortController().signal);
      linked.signal.addEventListener("abort", () => undefined, { once: true });
      ref = new WeakRef(linked.signal);
      linked.unlink();
    })();
    // WeakRef targets are kept until the current job ends: collect in a later one.
    await new Promise((r) => setTimeout(r, 0));
    gc();
    expect(ref!.deref()).toBeUndefined();
  });
});
