import { after, Code, ConnectError, observe, type RunEvent, type StreamEnd } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { collect, runResult } from "../support/plugin-context.ts";

async function* run(fail?: Error): AsyncIterable<RunEvent> {
  yield { type: "started", model: "m" };
  yield { type: "delta", text: "a" };
  if (fail) throw fail;
  yield { type: "completed", result: runResult("a") };
}

describe("observe", () => {
  it("passes every event through unchanged and reports a normal end once", async () => {
    const seen: string[] = [];
    const ends: StreamEnd[] = [];
    const events = await collect(observe(run(), { event: (e) => seen.push(e.type), end: (how) => ends.push(how) }));
    expect(events.map((e) => e.type)).toEqual(["started", "delta", "completed"]);
    expect(seen).toEqual(["started", "delta", "completed"]);
    expect(ends).toEqual([{}]);
  });

  it("reports the upstream failure and still rethrows it to the consumer", async () => {
    const ends: StreamEnd[] = [];
    const boom = new ConnectError("down", Code.Unavailable);
    await expect(collect(observe(run(boom), { end: (how) => ends.push(how) }))).rejects.toBe(boom);
    expect(ends).toEqual([{ error: boom }]);
  });

  it("reports a consumer that stopped early as abandoned, and closes upstream", async () => {
    const ends: StreamEnd[] = [];
    let closed = false;
    async function* upstream(): AsyncIterable<RunEvent> {
      try {
        yield* run();
      } finally {
        closed = true;
      }
    }
    for await (const event of observe(upstream(), { end: (how) => ends.push(how) })) {
      if (event.type === "delta") break;
    }
    expect(ends).toEqual([{ abandoned: true }]);
    expect(closed).toBe(true);
  });
});

describe("after", () => {
  it("starts the stream only once the prelude has settled", async () => {
    const order: string[] = [];
    let release!: () => void;
    const prelude = new Promise<void>((r) => (release = r)).then(() => void order.push("prelude"));
    const stream = after(prelude, () => {
      order.push("run");
      return run();
    });
    const done = collect(stream);
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual([]);
    release();
    expect((await done).map((e) => e.type)).toEqual(["started", "delta", "completed"]);
    expect(order).toEqual(["prelude", "run"]);
  });

  it("fails with the prelude's error without running the stream", async () => {
    let ran = false;
    const refused = new ConnectError("no", Code.PermissionDenied);
    const stream = after(Promise.reject(refused), () => {
      ran = true;
      return run();
    });
    await expect(collect(stream)).rejects.toBe(refused);
    expect(ran).toBe(false);
  });

  it("leaves no unhandled rejection when nobody iterates a refused stream", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    after(Promise.reject(new Error("nobody asked")), run);
    await new Promise((r) => setTimeout(r, 20));
    process.off("unhandledRejection", onUnhandled);
    expect(unhandled).toEqual([]);
  });
});
