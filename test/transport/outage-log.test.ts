import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { storeUnavailable } from "../../src/clients/shared.ts";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { ErrorEdge } from "../../src/transport/edge-error.ts";
import { OutageLog } from "../../src/transport/outage-log.ts";

/** What the driver rejects with when the store's port is closed. */
function refused(): Error {
  return Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6390"), { code: "ECONNREFUSED" });
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) });
  return { lines, log: pino({ level: "info" }, sink) };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("OutageLog", () => {
  it("logs the first failure with its detail, then one line per interval counting the rest, per store", async () => {
    let t = 0;
    const { lines, log } = capture();
    const outages = new OutageLog(log, 30_000, () => t);
    for (let i = 0; i < 1000; i++) outages.note("session store", refused(), "redis");
    outages.note("rate-limit redis backend", refused());
    t += 30_000;
    outages.note("session store", refused(), "redis");
    await settle();
    expect(lines.map((l) => [l.msg, l.failures])).toEqual([
      ["session store (redis) unavailable", 1],
      ["rate-limit redis backend unavailable", 1],
      ["session store (redis) unavailable", 1000],
    ]);
    expect(lines[0]!.err).toBe("connect ECONNREFUSED 127.0.0.1:6390");
  });
});

describe("ErrorEdge and store outages", () => {
  const method = AgentService.method.execute;

  it("logs the detail the client never sees, throttled, for storeUnavailable errors and a plugin's own STORE_UNAVAILABLE", async () => {
    const { lines, log } = capture();
    const edge = new ErrorEdge(log, new OutageLog(log, 30_000));
    for (let i = 0; i < 50; i++) {
      const sent = edge.toClient(storeUnavailable("session store", refused(), "postgres"), method);
      expect([sent.code, sent.rawMessage]).toEqual([Code.Unavailable, "session store unavailable"]);
    }
    // A plugin has only the public contract: a ConnectError with the reason and the driver's error as cause.
    const plugin = withReason(
      new ConnectError("rate-limit redis backend unavailable", Code.Unavailable, undefined, undefined, refused()),
      ErrorReason.STORE_UNAVAILABLE,
    );
    edge.toClient(plugin, method);
    // Other errors cost no outage line; an UNAVAILABLE without a cause has no detail to log.
    edge.toClient(new ConnectError("gone", Code.NotFound), method);
    edge.toClient(withReason(new ConnectError("draining", Code.Unavailable), ErrorReason.SHUTTING_DOWN), method);
    await settle();
    expect(lines.map((l) => [l.msg, l.err])).toEqual([
      ["session store (postgres) unavailable", "connect ECONNREFUSED 127.0.0.1:6390"],
      ["rate-limit redis backend unavailable", "connect ECONNREFUSED 127.0.0.1:6390"],
    ]);
  });

  it("records a batch item's error as it would a call's", async () => {
    const { lines, log } = capture();
    const edge = new ErrorEdge(log, new OutageLog(log, 30_000));
    edge.record(storeUnavailable("session store", refused(), "redis"));
    await settle();
    expect(lines.map((l) => l.msg)).toEqual(["session store (redis) unavailable"]);
  });
});
