import { describe, expect, it } from "vitest";
import pino from "pino";
import { Writable } from "node:stream";
import logging from "../../../src/plugins/builtin/logging.ts";
import { setUpPlugin } from "../../support/plugin-context.ts";
import { adder, callInfo, input, scriptedModel, toolExecutor } from "./tool-run.ts";

/** The logging middleware writing JSON lines at `level` into `lines`. */
async function logged(level: string) {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
  const mw = await setUpPlugin(logging, {}, { logger });
  return { mw, lines };
}

/** Runs a step that calls add (runs) and an unknown tool (refused), then answers. */
async function toolRun(mw: Awaited<ReturnType<typeof logged>>["mw"]) {
  const model = scriptedModel((n) =>
    n === 1
      ? {
          calls: [
            ["add", '{"a":1,"b":2}'],
            ["nope", "{}"],
          ],
        }
      : { say: "3" },
  );
  const { executor, store } = toolExecutor(model, [adder()], [mw]);
  try {
    await executor.execute(input(), callInfo());
  } finally {
    await store.close();
  }
}

describe("logging plugin and tool calls", () => {
  it("at debug, logs a line per tool call result: tool, outcome, duration, step; then the call's line", async () => {
    const { mw, lines } = await logged("debug");
    await toolRun(mw);
    expect(lines.map((l) => [l.msg, l.tool, l.outcome, l.step])).toEqual([
      ["tool call", "nope", "denied", 1],
      ["tool call", "add", "ok", 1],
      ["call", undefined, undefined, undefined],
    ]);
    const [first, second, call] = lines as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
    expect(first).toMatchObject({ level: 20, agent: "helper", toolCallId: "c1_1", call: call.call });
    expect(typeof second.durationMs).toBe("number");
    // Never the arguments.
    expect(JSON.stringify(lines)).not.toContain('"a":1');
  });

  it("above debug, logs only the call's line", async () => {
    const { mw, lines } = await logged("info");
    await toolRun(mw);
    expect(lines.map((l) => l.msg)).toEqual(["call"]);
  });

  it("a durable run that parks for an approval logs its call as parked, not cancelled", async () => {
    const { mw, lines } = await logged("info");
    const guarded = Object.assign(adder(), { needsApproval: true });
    const { executor, store } = toolExecutor(
      scriptedModel(() => ({ calls: [["add", '{"a":1,"b":2}']] })),
      [guarded],
      [mw],
    );
    try {
      // As RunManager does: the stream is left once the run parks.
      for await (const event of executor.stream(input(), { ...callInfo(), runId: "run-1" })) if (event.type === "waiting") break;
    } finally {
      await store.close();
    }
    expect(lines.map((l) => [l.msg, l.status, l.pending])).toEqual([["call parked", "WAITING", 1]]);
    expect(guarded.runs).toBe(0);
  });
});
