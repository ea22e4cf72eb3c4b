import type { Middleware, RunEvent, RuntimeEvent } from "@qingyu/plugin-api";
import { afterEach, describe, expect, it } from "vitest";
import cachePlugin from "../../../../src/plugins/builtin/cache/plugin.ts";
import type { SessionStore } from "../../../../src/sessions/types.ts";
import { agentContext, collect as collectEvents, setUpPlugin, terminal } from "../../../support/plugin-context.ts";
import { addThenAnswer, adder, callInfo, collect, completed, failing, input, scriptedModel, toolExecutor } from "../tool-run.ts";

const deltas = (events: RunEvent[]) => events.flatMap((e) => (e.type === "delta" ? [e.text] : []));

const stores: SessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

async function cached(model: ReturnType<typeof scriptedModel>, tools: Parameters<typeof toolExecutor>[1], agent = {}) {
  const cache = await setUpPlugin(cachePlugin, {});
  const built = toolExecutor(model, tools, [cache], agent);
  stores.push(built.store);
  return built;
}

describe("cache and tool runs", () => {
  it("does not cache a run that called a tool not marked idempotent: the next call runs the model and the tool again", async () => {
    const add = adder();
    const model = scriptedModel(addThenAnswer);
    const { executor } = await cached(model, [add]);
    const first = await executor.execute(input(), callInfo());
    const second = await executor.execute(input(), callInfo());
    expect([first.metadata.cache, second.metadata.cache]).toEqual(["miss", "miss"]);
    expect(second.toolCalls!.map((c) => c.outcome)).toEqual(["ok"]);
    expect(add.runs).toBe(2);
    expect(model.requests).toHaveLength(4);
  });

  it("does not cache a run whose idempotent tool failed, or one a middleware refused", async () => {
    const model = scriptedModel((n) => (n % 2 === 1 ? { calls: [["fails", "{}"]] } : { say: "it failed" }));
    const { executor } = await cached(model, [failing({ idempotent: true })]);
    await executor.execute(input(), callInfo());
    expect((await executor.execute(input(), callInfo())).metadata.cache).toBe("miss");
    expect(model.requests).toHaveLength(4);

    const refuse: Middleware = { name: "refuse", process: (_ctx, next) => next(), toolCall: () => ({ deny: "not today" }) };
    const cache = await setUpPlugin(cachePlugin, {});
    const denied = toolExecutor(scriptedModel(addThenAnswer), [adder({ idempotent: true })], [cache, refuse]);
    stores.push(denied.store);
    const r = await denied.executor.execute(input(), callInfo());
    expect(r.toolCalls!.map((c) => c.outcome)).toEqual(["denied"]);
    expect((await denied.executor.execute(input(), callInfo())).metadata.cache).toBe("miss");
  });

  it("caches a run whose every call is idempotent and ok; a hit replays only started, the text and completed, and the session stores [task, answer]", async () => {
    const add = adder({ idempotent: true });
    const model = scriptedModel(addThenAnswer);
    const { executor, sessions, events } = await cached(model, [add]);
    const published: RuntimeEvent[] = [];
    events.subscribe(["TOOL_CALLED", "TOOL_COMPLETED"], (e) => void published.push(e));

    const one = await sessions.create("alice", "helper", {}, 600);
    const two = await sessions.create("alice", "helper", {}, 600);
    const miss = await collect(executor.stream(input({ sessionId: one.id }), callInfo()));
    const hit = await collect(executor.stream(input({ sessionId: two.id }), callInfo()));
    await new Promise((resolve) => setImmediate(resolve));

    expect(completed(miss).metadata.cache).toBe("miss");
    expect(completed(hit).metadata.cache).toBe("hit");
    expect(add.runs).toBe(1);
    expect(model.requests).toHaveLength(2);
    // The same text chunks as the run streamed, and no step or tool event.
    expect(deltas(hit)).toEqual(deltas(miss));
    expect(deltas(hit).join("")).toBe("Let me add. It is 3.");
    expect(hit.map((e) => e.type)).toEqual(["started", ...deltas(miss).map(() => "delta"), "completed"]);
    expect(miss.map((e) => e.type)).toContain("tool_result");
    // The tools did not run for the hit: nothing says they did.
    expect(published.map((e) => e.type)).toEqual(["TOOL_CALLED", "TOOL_COMPLETED"]);
    // The answer keeps what it came from.
    expect(completed(hit).toolCalls).toEqual(completed(miss).toolCalls);
    expect(completed(hit).steps).toBe(2);

    expect((await sessions.read(one.id, "alice")).messages).toEqual([
      { role: "user", content: "what is 1+2?" },
      { role: "assistant", content: "Let me add. ", toolCalls: [{ id: "c1_0", name: "add", arguments: '{"a":1,"b":2}' }] },
      { role: "tool", toolCallId: "c1_0", content: '{"sum":3}' },
      { role: "assistant", content: "It is 3." },
    ]);
    expect((await sessions.read(two.id, "alice")).messages).toEqual([
      { role: "user", content: "what is 1+2?" },
      { role: "assistant", content: "Let me add. It is 3." },
    ]);
  });

  it("keeps a structured answer on a hit", async () => {
    const schema = { type: "object", properties: { sum: { type: "number" } }, required: ["sum"] };
    const model = scriptedModel(() => ({ say: '{"sum": 3}' }));
    const { executor } = await cached(model, [], { tools: [], outputSchema: schema });
    const miss = await executor.execute(input(), callInfo());
    const hit = await executor.execute(input(), callInfo());
    expect(hit.metadata.cache).toBe("hit");
    expect(model.requests).toHaveLength(1);
    expect(miss.structuredOutput).toEqual({ sum: 3 });
    expect(hit.structuredOutput).toEqual({ sum: 3 });
  });

  it("misses when the call's tool options differ", async () => {
    const cache = await setUpPlugin(cachePlugin, {});
    const t = terminal();
    const run = (edit: (ctx: ReturnType<typeof agentContext>) => void) => {
      const ctx = agentContext({ task: "same" });
      edit(ctx);
      return collectEvents(cache.process(ctx, t.next));
    };
    await run(() => undefined);
    await run((ctx) => (ctx.options.tools = ["add"]));
    await run((ctx) => (ctx.options.toolChoice = "required"));
    await run((ctx) => (ctx.options.maxSteps = 2));
    await run((ctx) => (ctx.options.outputSchema = { type: "object" }));
    expect(t.calls).toBe(5);
    // An empty narrowing list narrows nothing: the same call as the first.
    await run((ctx) => (ctx.options.tools = []));
    expect(t.calls).toBe(5);
  });

  it("misses when the history's tool calls differ, though their text is the same", async () => {
    const cache = await setUpPlugin(cachePlugin, {});
    const t = terminal();
    const history = (args: string) => [
      { role: "user" as const, content: "add" },
      { role: "assistant" as const, content: "", toolCalls: [{ id: "x", name: "add", arguments: args }] },
      { role: "tool" as const, toolCallId: "x", content: "done" },
      { role: "assistant" as const, content: "done" },
    ];
    await collectEvents(cache.process(agentContext({ task: "again", history: history('{"a":1}') }), t.next));
    await collectEvents(cache.process(agentContext({ task: "again", history: history('{"a":2}') }), t.next));
    expect(t.calls).toBe(2);
  });
});
