import { Code, type Middleware, type Principal, type RunEvent } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { createRateLimitPlugin } from "../../../../src/plugins/builtin/rate-limit/plugin.ts";
import { estimateInputTokens } from "../../../../src/plugins/builtin/rate-limit/estimate.ts";
import { MemoryBuckets } from "../../../../src/plugins/builtin/rate-limit/memory-buckets.ts";
import { agentContext, collect, runResult, setUpPlugin, terminal, testAgent, type ContextInit } from "../../../support/plugin-context.ts";
import { rejection } from "../../../support/rejection.ts";

const principal = (id: string): Principal => ({ id, admin: false, roles: [], method: "api-key" });

/** A limiter on a clock the test moves. */
async function limiter(options: unknown): Promise<{ mw: Middleware; advance(ms: number): void }> {
  let now = 1_700_000_000_000;
  const mw = await setUpPlugin(createRateLimitPlugin({ now: () => now }), { backend: "memory", ...(options as object) });
  return { mw, advance: (ms) => (now += ms) };
}

/** A `next` whose run reports the given usage (input, output). */
function usingTokens(inputTokens: number, outputTokens: number) {
  const t = {
    calls: 0,
    next: async function* (): AsyncIterable<RunEvent> {
      t.calls++;
      yield { type: "started", model: "echo-1" };
      yield { type: "completed", result: runResult("ok", { inputTokens, outputTokens }) };
    },
  };
  return t;
}

/** A `next` that fails after it started. */
function failing() {
  return async function* (): AsyncIterable<RunEvent> {
    yield { type: "started", model: "echo-1" };
    throw new Error("upstream broke");
  };
}

const call = (mw: Middleware, init: ContextInit, next = terminal().next) => collect(mw.process(agentContext(init), next));
/** A task of exactly `tokens` estimated tokens (4 chars each). */
const taskOf = (tokens: number) => "x".repeat(tokens * 4);

describe("rate-limit (memory)", () => {
  it("refuses the call past the requests-per-minute limit with RESOURCE_EXHAUSTED and a retry-after", async () => {
    const { mw } = await limiter({ perPrincipal: { requestsPerMinute: 3 } });
    const t = terminal();
    for (let i = 0; i < 3; i++) await call(mw, { principal: principal("alice") }, t.next);
    const err = await rejection(call(mw, { principal: principal("alice") }, t.next));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toContain('requests per minute for principal "alice"');
    // 3 per minute refill one every 20 s, and no time has passed.
    expect(err.metadata.get("retry-after-ms")).toBe("20000");
    expect(err.metadata.get("retry-after")).toBe("20");
    expect(t.calls).toBe(3);
  });

  it("lets calls through again once the bucket has refilled", async () => {
    const { mw, advance } = await limiter({ perPrincipal: { requestsPerMinute: 2 } });
    await call(mw, { userId: "bob" });
    await call(mw, { userId: "bob" });
    const first = await rejection(call(mw, { userId: "bob" }));
    expect(first.rawMessage).toContain('principal "user:bob"');
    const wait = Number(first.metadata.get("retry-after-ms"));
    expect(wait).toBe(30_000);

    advance(wait - 100);
    const again = await rejection(call(mw, { userId: "bob" }));
    expect(Number(again.metadata.get("retry-after-ms"))).toBe(100);
    advance(100);
    await expect(call(mw, { userId: "bob" })).resolves.toHaveLength(4);
    // A full minute refills the whole bucket, never more.
    advance(10 * 60_000);
    await call(mw, { userId: "bob" });
    await call(mw, { userId: "bob" });
    expect((await rejection(call(mw, { userId: "bob" }))).code).toBe(Code.ResourceExhausted);
  });

  it("keeps per-principal and per-agent buckets independent", async () => {
    const { mw } = await limiter({ perPrincipal: { requestsPerMinute: 2 }, perAgent: { requestsPerMinute: 3 } });
    await call(mw, { principal: principal("alice") });
    await call(mw, { principal: principal("alice"), agentId: "other" });
    // Alice's own limit is spent over both agents; echo still has two calls left.
    const alice = await rejection(call(mw, { principal: principal("alice") }));
    expect(alice.rawMessage).toContain('requests per minute for principal "alice"');
    await call(mw, { principal: principal("bob") });
    await call(mw, {}); // anonymous
    // Echo has now served alice once, bob and anonymous: its own limit refuses carol.
    const carol = await rejection(call(mw, { principal: principal("carol") }));
    expect(carol.code).toBe(Code.ResourceExhausted);
    expect(carol.rawMessage).toContain('requests per minute for agent "echo"');
    await expect(call(mw, { principal: principal("carol"), agentId: "other" })).resolves.toHaveLength(4);
    // Anonymous callers share one bucket.
    await call(mw, { agentId: "other" });
    const anon = await rejection(call(mw, { agentId: "third" }));
    expect(anon.rawMessage).toContain('principal "anonymous"');
  });

  it("settles with the real usage: a call that used more than estimated puts the bucket in debt", async () => {
    const { mw, advance } = await limiter({ perPrincipal: { tokensPerMinute: 100 } });
    const big = usingTokens(100, 50); // estimated 10, really 150
    await call(mw, { principal: principal("alice"), task: taskOf(10) }, big.next);
    const err = await rejection(call(mw, { principal: principal("alice"), task: taskOf(1) }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toContain('tokens per minute for principal "alice"');
    // At -50 the bucket needs 51 tokens back for a 1-token call: 51 × 600 ms.
    expect(err.metadata.get("retry-after-ms")).toBe("30600");
    advance(30_600);
    await expect(call(mw, { principal: principal("alice"), task: taskOf(1) })).resolves.toHaveLength(4);
  });

  it("settles a call that used less than estimated by giving the difference back", async () => {
    const { mw } = await limiter({ perAgent: { tokensPerMinute: 100 } });
    await call(mw, { task: taskOf(90) }, usingTokens(5, 5).next);
    // Without the settle only 10 would be left.
    await expect(call(mw, { task: taskOf(80) }, usingTokens(80, 0).next)).resolves.toHaveLength(2);
    expect((await rejection(call(mw, { task: taskOf(20) }))).rawMessage).toContain('tokens per minute for agent "echo"');
  });

  it("refunds the estimate when the call fails or is abandoned, but not when it completes", async () => {
    const { mw } = await limiter({ perPrincipal: { tokensPerMinute: 100 } });
    const ctx = { principal: principal("alice"), task: taskOf(60) };
    await expect(call(mw, ctx, failing())).rejects.toThrow("upstream broke");
    // Abandoned after the first event, as a client cancelling would.
    for await (const _ of mw.process(agentContext(ctx), terminal().next)) break;
    await expect(call(mw, ctx, usingTokens(60, 0).next)).resolves.toHaveLength(2);
    const err = await rejection(call(mw, ctx, usingTokens(60, 0).next));
    expect(err.code).toBe(Code.ResourceExhausted);
  });

  it("is all-or-nothing: a refusal by one bucket takes nothing from the others", async () => {
    const { mw } = await limiter({ perPrincipal: { requestsPerMinute: 1 }, perAgent: { tokensPerMinute: 100 } });
    await call(mw, { principal: principal("alice"), task: taskOf(10) }, usingTokens(10, 0).next);
    // Refused by alice's requests; echo's 90 tokens must stay.
    const byRequests = await rejection(call(mw, { principal: principal("alice"), task: taskOf(90) }));
    expect(byRequests.rawMessage).toContain('requests per minute for principal "alice"');
    await call(mw, { principal: principal("bob"), task: taskOf(90) }, usingTokens(90, 0).next);
    // Refused by echo's tokens; carol's one request must stay.
    const byTokens = await rejection(call(mw, { principal: principal("carol"), task: taskOf(10) }));
    expect(byTokens.rawMessage).toContain('tokens per minute for agent "echo"');
    await expect(call(mw, { principal: principal("carol"), agentId: "other" })).resolves.toHaveLength(4);
  });

  it("refuses a call whose estimate can never fit with INVALID_ARGUMENT and no retry-after", async () => {
    const { mw } = await limiter({ perPrincipal: { tokensPerMinute: 100 } });
    const t = terminal();
    const history = [{ role: "user" as const, content: "y".repeat(400) }];
    const err = await rejection(call(mw, { principal: principal("alice"), task: "abcd", history }, t.next));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("101 input tokens");
    expect(err.rawMessage).toContain("can never fit");
    expect(err.metadata.get("retry-after-ms")).toBeNull();
    expect(t.calls).toBe(0);
    // Nothing was taken: a call of exactly the capacity still goes through.
    await expect(call(mw, { principal: principal("alice"), task: taskOf(100) }, t.next)).resolves.toHaveLength(4);
  });

  it("passes every call when no limit is configured", async () => {
    const { mw } = await limiter({});
    for (let i = 0; i < 50; i++) await call(mw, {});
  });

  it("rejects unknown options", async () => {
    await expect(setUpPlugin(createRateLimitPlugin(), { perPrincipal: { requestsPerSecond: 1 } })).rejects.toThrow();
  });
});

describe("estimateInputTokens", () => {
  it("counts the system prompt, the history and the task, four characters a token", async () => {
    const ctx = {
      ...agentContext({
        task: "abcde",
        history: [
          { role: "user", content: "x".repeat(7) },
          { role: "assistant", content: "y".repeat(8) },
        ],
      }),
      agent: { ...testAgent, systemPrompt: "s".repeat(12) },
    };
    expect(await estimateInputTokens(ctx)).toBe(Math.ceil((12 + 7 + 8 + 5) / 4));
  });
});

describe("MemoryBuckets", () => {
  it("drops buckets once they are full again, so idle keys do not pile up", async () => {
    let now = 0;
    const buckets = new MemoryBuckets(() => now);
    for (let i = 0; i < 500; i++) await buckets.take([{ key: `k${i}`, capacity: 10, amount: 1 }]);
    expect(buckets.size).toBe(500);
    now += 5_000;
    buckets.sweep();
    expect(buckets.size).toBe(500);
    now += 1_000; // 6 s refills the one token taken
    buckets.sweep();
    expect(buckets.size).toBe(0);
    // A refund that fills a bucket removes it at once.
    await buckets.take([{ key: "r", capacity: 10, amount: 4 }]);
    await buckets.adjust([{ key: "r", capacity: 10, amount: -4 }]);
    expect(buckets.size).toBe(0);
    buckets.dispose();
  });

  it("sweeps on insert once the map has grown, without waiting for the timer", async () => {
    let now = 0;
    const buckets = new MemoryBuckets(() => now);
    for (let i = 0; i < 1000; i++) await buckets.take([{ key: `old${i}`, capacity: 60, amount: 1 }]);
    now += 1_000;
    for (let i = 0; i < 1000; i++) await buckets.take([{ key: `new${i}`, capacity: 60, amount: 1 }]);
    // The old keys were full again when the map reached the sweep size.
    expect(buckets.size).toBeLessThan(1100);
    buckets.dispose();
  });
});
