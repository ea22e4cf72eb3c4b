import { afterEach, describe, expect, it } from "vitest";
import { addThenAnswer, adder, callInfo, input, scriptedModel, toolExecutor } from "../tool-run.ts";
import { SECRET, setUp, startReceiver, waitFor, type Receiver } from "./helpers.ts";

const receivers: Receiver[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

const typesOf = (r: Receiver) => r.requests.map((req) => String(req.headers["x-qingyu-event-type"]));

describe("webhooks and tool events", () => {
  it("accepts TOOL_CALLED and TOOL_COMPLETED in an endpoint's types and subscribes to just those", async () => {
    const { handler } = await setUp({ endpoints: [{ url: "http://127.0.0.1:9/hook", secret: SECRET, types: ["TOOL_CALLED", "TOOL_COMPLETED"] }] });
    expect(handler.types).toEqual(["TOOL_CALLED", "TOOL_COMPLETED"]);
    await handler.dispose!();
  });

  it("sends a tool run's TOOL_CALLED and TOOL_COMPLETED to the endpoint asking for them, and every event to one asking for all", async () => {
    const tools = await receiver();
    const all = await receiver();
    const { handler } = await setUp({
      endpoints: [
        { url: tools.url, secret: SECRET, types: ["TOOL_CALLED", "TOOL_COMPLETED"] },
        { url: all.url, secret: SECRET },
      ],
      // One POST at a time per endpoint: they arrive in the order they were published.
      concurrency: 1,
    });
    const { executor, events, store } = toolExecutor(scriptedModel(addThenAnswer), [adder()]);
    // As the host subscribes an event handler.
    const unsubscribe = events.subscribe(handler.types, (e) => handler.handle(e));
    try {
      await executor.execute(input(), callInfo());
      await waitFor(() => all.requests.length === 4);
    } finally {
      unsubscribe();
      await store.close();
      await handler.dispose!();
    }

    const bodies = tools.requests.map((r) => JSON.parse(r.body) as { type: string; agentId: string; data: Record<string, unknown> });
    expect(bodies.map((b) => [b.type, b.agentId, b.data.tool, b.data.toolCallId, b.data.step, b.data.outcome])).toEqual([
      ["TOOL_CALLED", "helper", "add", "c1_0", 1, undefined],
      ["TOOL_COMPLETED", "helper", "add", "c1_0", 1, "ok"],
    ]);
    expect(typesOf(all)).toEqual(["AGENT_STARTED", "TOOL_CALLED", "TOOL_COMPLETED", "AGENT_COMPLETED"]);
  });
});
