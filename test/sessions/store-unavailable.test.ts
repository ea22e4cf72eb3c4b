import { Code } from "@qingyu/plugin-api";
import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { failureDetail, OutageLog, storeUnavailable } from "../../src/clients/shared.ts";

/** What the driver rejects with when the store's port is closed. */
function refused(): Error {
  return Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6390"), { code: "ECONNREFUSED" });
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) });
  return { lines, log: pino({ level: "info" }, sink) };
}

describe("storeUnavailable", () => {
  it("tells the client only what is unavailable; the driver's message stays on the cause", () => {
    const err = storeUnavailable("session store", refused(), "redis");
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("session store unavailable");
    expect(err.message).not.toMatch(/127\.0\.0\.1|6390|ECONNREFUSED/);
    expect(failureDetail(err)).toBe("session store unavailable: connect ECONNREFUSED 127.0.0.1:6390");
  });

  it("names each address of an AggregateError in the detail", () => {
    const both = new AggregateError([refused(), Object.assign(new Error(""), { code: "ETIMEDOUT" })], "");
    expect(failureDetail(storeUnavailable("session store", both))).toBe("session store unavailable: connect ECONNREFUSED 127.0.0.1:6390; ETIMEDOUT");
  });
});

describe("OutageLog", () => {
  it("logs the first failure with its detail, then one line per interval counting the rest, per store", async () => {
    let t = 0;
    const outages = new OutageLog(30_000, () => t);
    const { lines, log } = capture();
    outages.attach(log);
    for (let i = 0; i < 1000; i++) outages.note("session store", refused(), "redis");
    outages.note("rate-limit redis backend", refused());
    t += 30_000;
    outages.note("session store", refused(), "redis");
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l.msg, l.failures])).toEqual([
      ["session store (redis) unavailable", 1],
      ["rate-limit redis backend unavailable", 1],
      ["session store (redis) unavailable", 1000],
    ]);
    expect(lines[0]!.err).toBe("connect ECONNREFUSED 127.0.0.1:6390");
  });

  it("stops writing to a log once detached, and a later attach takes over", async () => {
    const outages = new OutageLog(0);
    const first = capture();
    const second = capture();
    const detachFirst = outages.attach(first.log);
    outages.attach(second.log);
    detachFirst(); // not the current one: leaves the second attached
    outages.note("session store", refused());
    await new Promise((r) => setImmediate(r));
    expect([first.lines.length, second.lines.length]).toEqual([0, 1]);
  });
});
