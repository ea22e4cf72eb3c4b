import type { EventHandler, RuntimeEvent } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import pino from "pino";
import { Writable } from "node:stream";
import alerting from "../../../src/plugins/builtin/alerting.ts";
import { setUpPlugin } from "../../support/plugin-context.ts";

async function setUp(options: unknown): Promise<{ handler: EventHandler; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) }));
  return { handler: await setUpPlugin(alerting, options, { logger }), lines };
}

const failure = (code: string): RuntimeEvent => ({
  id: "e1",
  type: "ERROR_OCCURRED",
  time: new Date("2026-01-02T03:04:05Z"),
  agentId: "support",
  sessionId: "s1",
  userId: "alice",
  data: { callId: "c1", code, message: "upstream said no" },
});

describe("alerting event handler", () => {
  it("subscribes to ERROR_OCCURRED and logs it at error level with agent, session and error", async () => {
    const { handler, lines } = await setUp(undefined);
    expect(handler.types).toEqual(["ERROR_OCCURRED"]);
    await handler.handle(failure("UNAVAILABLE"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 50, agent: "support", session: "s1", user: "alice", code: "UNAVAILABLE", error: "upstream said no", call: "c1" });
  });

  it("logs only the configured codes, at the configured level", async () => {
    const { handler, lines } = await setUp({ codes: ["INTERNAL"], level: "warn" });
    await handler.handle(failure("INVALID_ARGUMENT"));
    await handler.handle(failure("INTERNAL"));
    expect(lines.map((l) => [l.level, l.code])).toEqual([[40, "INTERNAL"]]);
  });
});
