import { Code, ProviderError } from "@qingyu/plugin-api";
import { afterEach, describe, expect, it } from "vitest";
import { createRateLimitPlugin } from "../../../../src/plugins/builtin/rate-limit/plugin.ts";
import type { SessionStore } from "../../../../src/sessions/types.ts";
import { agentContext, collect, setUpPlugin } from "../../../support/plugin-context.ts";
import { rejection } from "../../../support/rejection.ts";
import { adder, callInfo, input, scriptedModel, toolExecutor, type Turn } from "../tool-run.ts";

// 60 000 tokens a minute refill one token a millisecond: a refusal's retry-after-ms is how many tokens the bucket lacks.
const CAPACITY = 60_000;

const stores: SessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

/** The rate limiter (per-principal tokens, on a stopped clock) in front of an executor whose model follows `script`. */
async function limitedRun(script: (n: number) => Turn) {
  const limiter = await setUpPlugin(createRateLimitPlugin({ now: () => 1_700_000_000_000 }), {
    backend: "memory",
    perPrincipal: { tokensPerMinute: CAPACITY },
  });
  const model = scriptedModel(script);
  const built = toolExecutor(model, [adder()], [limiter]);
  stores.push(built.store);
  /** How many tokens alice's bucket lacks for a full-capacity call: what earlier calls were charged. */
  const charged = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    const probe = agentContext({ userId: "alice", task: "x".repeat(CAPACITY * 4) });
    const err = await rejection(collect(limiter.process(probe, async function* () {})));
    expect(err.code).toBe(Code.ResourceExhausted);
    return Number(err.metadata.get("retry-after-ms"));
  };
  return { ...built, model, limiter, charged };
}

describe("rate-limit and tool runs", () => {
  it("charges a two-step tool run the tokens of both steps", async () => {
    const { executor, model, charged } = await limitedRun((n) =>
      n === 1
        ? { calls: [["add", '{"a":1,"b":2}']], usage: { inputTokens: 100, outputTokens: 20 } }
        : { say: "3", usage: { inputTokens: 300, outputTokens: 40 } },
    );
    const result = await executor.execute(input(), callInfo());
    expect(model.requests).toHaveLength(2);
    expect(result.usage).toEqual({ inputTokens: 400, outputTokens: 60 });
    expect(await charged()).toBe(460);
  });

  it("charges a tool run that fails at a later step the tokens its finished steps used, instead of refunding them", async () => {
    const { executor, charged } = await limitedRun((n) =>
      n === 1
        ? { calls: [["add", '{"a":1,"b":2}']], usage: { inputTokens: 100, outputTokens: 20 } }
        : { fail: new ProviderError("bad request upstream", Code.InvalidArgument, false) },
    );
    await expect(executor.execute(input(), callInfo())).rejects.toThrow("bad request upstream");
    expect(await charged()).toBe(120);
  });

  it("counts a tool call in the history towards the estimate", async () => {
    const { charged, limiter } = await limitedRun(() => ({}));
    const history = [
      { role: "user" as const, content: "" },
      { role: "assistant" as const, content: "", toolCalls: [{ id: "x", name: "ab", arguments: "c".repeat(398) }] },
    ];
    const ctx = agentContext({ userId: "alice", task: "", history });
    const it = limiter
      .process(ctx, async function* () {
        yield { type: "started", model: "m" };
      })
      [Symbol.asyncIterator]();
    await it.next();
    // Held while the call runs: the call's name and arguments, (2 + 398) / 4 characters a token.
    expect(await charged()).toBe(100);
    await it.return!();
  });
});
