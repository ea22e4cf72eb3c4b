import type { EventHandler, RuntimeEvent } from "@qingyu/plugin-api";
import { afterEach, describe, expect, it, vi } from "vitest";
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

  describe("rate limit", () => {
    afterEach(() => vi.useRealTimers());

    it("logs at most maxPerMinute lines, then one summary by code when the minute ends", async () => {
      vi.useFakeTimers();
      const { handler, lines } = await setUp({ maxPerMinute: 3 });
      for (let i = 0; i < 100; i++) await handler.handle(failure(i % 4 === 0 ? "INTERNAL" : "UNAUTHENTICATED"));
      expect(lines).toHaveLength(3);
      vi.advanceTimersByTime(60_000);
      expect(lines).toHaveLength(4);
      const summary = lines[3]!;
      expect(summary).toMatchObject({ level: 50, alert: "agent call failures suppressed", suppressed: 97, codes: { INTERNAL: 24, UNAUTHENTICATED: 73 } });
      expect(summary.msg).toContain("97 more agent call failures");
      // A new minute logs again.
      await handler.handle(failure("UNAVAILABLE"));
      expect(lines.at(-1)).toMatchObject({ alert: "agent call failed", code: "UNAVAILABLE" });
    });

    it("defaults to 60 lines a minute, and writes no summary when nothing was held back", async () => {
      vi.useFakeTimers();
      const { handler, lines } = await setUp(undefined);
      for (let i = 0; i < 60; i++) await handler.handle(failure("INTERNAL"));
      vi.advanceTimersByTime(60_000);
      expect(lines).toHaveLength(60);
      for (let i = 0; i < 100; i++) await handler.handle(failure("INTERNAL"));
      expect(lines).toHaveLength(120);
    });

    it("sums up what was held back when disposed (a reload or shutdown) mid-minute", async () => {
      const { handler, lines } = await setUp({ maxPerMinute: 1 });
      await handler.handle(failure("INTERNAL"));
      await handler.handle(failure("INTERNAL"));
      await handler.dispose?.();
      expect(lines.map((l) => l.alert)).toEqual(["agent call failed", "agent call failures suppressed"]);
    });
  });
});
