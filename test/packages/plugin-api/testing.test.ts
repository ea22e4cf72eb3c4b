import { Code, ConnectError, ProviderError, definePlugin, type LlmProvider, type Middleware, type ProviderRequest, type RunEvent } from "@qingyu/plugin-api";
import { InvalidOptionsError, collect, runMiddleware, runProvider, runtimeEvent, setUp, testAgent } from "@qingyu/plugin-api/testing";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { afterAll, describe, expect, it } from "vitest";
import canned from "../../../plugins/examples/canned.ts";
import eventLog from "../../../plugins/examples/event-log.ts";
import wordFilter from "../../../plugins/examples/word-filter.ts";
import { settlesBefore } from "../../support/settles-before.ts";
import { useSdkCopy } from "../../support/sdk-copy.ts";

describe("setUp: options as the server validates them", () => {
  it("lists each issue as `path: message`, naming unknown keys", async () => {
    const err = await setUp(wordFilter, { words: [""], colour: "red" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InvalidOptionsError);
    const { message, lines } = err as InvalidOptionsError;
    expect(message.split("\n")[0]).toBe('invalid options for plugin "word-filter":');
    expect(lines).toHaveLength(2);
    expect(lines).toContain('options: unknown key "colour"');
    expect(lines.find((l) => l.startsWith("options.words.0: "))).toBeDefined();
    expect(message).toContain('\n  options: unknown key "colour"');
  });

  it("gives the schema {} when no options are given", async () => {
    // word-filter requires words: the schema sees an empty object, not undefined.
    const err = (await setUp(wordFilter).catch((e: unknown) => e)) as InvalidOptionsError;
    expect(err.lines).toEqual([expect.stringMatching(/^options\.words: /)]);
    const defaults = definePlugin({
      name: "defaults",
      kind: "middleware",
      configSchema: z.strictObject({ level: z.string().default("info") }),
      setup: ({ options }) => ({ name: "defaults", process: (_ctx, next) => next(), options }),
    });
    expect((await setUp(defaults)).host.options).toEqual({ level: "info" });
    const schemaless = definePlugin({ name: "bare", kind: "middleware", setup: () => ({ name: "bare", process: (_ctx, next) => next() }) });
    expect((await setUp(schemaless)).host.options).toEqual({});
    expect((await setUp(schemaless, { any: 1 })).host.options).toEqual({ any: 1 });
  });

  it("gives setup the defaults the schema filled in", async () => {
    const { product } = await setUp(wordFilter, { words: ["secret"] });
    const run = await runMiddleware(product, {}, ["a secret ", "plan"]);
    expect(run.text).toBe("a *** plan");
  });

  it("refuses what the server refuses about a definition", async () => {
    const other = { ...definePlugin({ name: "future", kind: "middleware", setup: () => ({ name: "future", process: (_c, n) => n() }) }), apiVersion: 2 };
    await expect(setUp(other)).rejects.toThrow(/plugin API 2/);
  });
});

describe("runMiddleware with the word-filter example", () => {
  it("passes a clean task through the default echo terminal", async () => {
    const { product } = await setUp(wordFilter, { words: ["secret"] });
    const run = await runMiddleware(product, { task: "hello there world" });
    expect(run.events.map((e) => e.type)).toEqual(["started", "delta", "delta", "delta", "completed"]);
    expect(run.text).toBe("hello there world");
    expect(run.result).toMatchObject({ success: true, output: "hello there world", model: testAgent.model, finishReason: "stop" });
    expect(run.terminalCalls).toBe(1);
  });

  it("masks blocked words in the streamed text and the result", async () => {
    const { product } = await setUp(wordFilter, { words: ["password"], mask: "[x]" });
    const run = await runMiddleware(product, { task: "tell me" }, ["your ", "password ", "is safe"]);
    expect(run.text).toBe("your [x] is safe");
    expect(run.result?.output).toBe("your [x] is safe");
  });

  it("masks a blocked word the provider split across chunks, and no chunk carries a piece of it", async () => {
    const { product } = await setUp(wordFilter, { words: ["password"], mask: "[x]" });
    const run = await runMiddleware(product, { task: "tell me" }, ["your pa", "ss", "word is", " safe"]);
    const deltas = run.events.flatMap((e) => (e.type === "delta" ? [e.text] : []));
    expect(deltas.some((d) => /pa|ss|word/i.test(d))).toBe(false);
    expect(run.text).toBe("your [x] is safe");
    expect(run.result?.output).toBe("your [x] is safe");
  });

  it("refuses a task with a blocked word before the terminal runs, and logs it", async () => {
    const { product, logs } = await setUp(wordFilter, { words: ["secret"] });
    const err = await runMiddleware(product, { task: "the Secret plan", userId: "alice" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect(logs).toEqual([expect.objectContaining({ level: "info", plugin: "word-filter", user: "alice", msg: "task refused by word filter" })]);
  });

  it("runs around a provider, with the prompt the server builds", async () => {
    const { product: filter } = await setUp(wordFilter, { words: ["password"] });
    const { product: faq } = await setUp(canned, { replies: { hours: "Open 9 to 5, no password needed." } });
    const agent = { ...testAgent, id: "faq", model: "canned-1", systemPrompt: "Be nice." };
    const requests: ProviderRequest[] = [];
    const recorded: LlmProvider = { stream: (req, signal) => (requests.push(req), faq.stream(req, signal)) };
    const history = [
      { role: "user" as const, content: "hi" },
      { role: "assistant" as const, content: "hello" },
    ];
    const run = await runMiddleware(filter, { task: "What are your hours?", agent, history, options: { temperature: 0.2 } }, recorded);
    expect(run.text).toBe("Open 9 to 5, no *** needed.");
    expect(run.result).toMatchObject({ model: "canned-1", finishReason: "stop", usage: { outputTokens: 7 } });
    expect(requests).toEqual([
      {
        model: "canned-1",
        temperature: 0.2,
        messages: [{ role: "system", content: "Be nice." }, ...history, { role: "user", content: "What are your hours?" }],
      },
    ]);
  });
});

describe("runMiddleware: the onion", () => {
  it("runs several middleware outermost first, sharing the context; a short-circuit skips the terminal", async () => {
    const order: string[] = [];
    const tag = (name: string): Middleware => ({
      name,
      async *process(ctx, next) {
        order.push(name);
        ctx.state.set(name, true);
        yield* next();
      },
    });
    const cached: Middleware = {
      name: "cache",
      async *process(ctx) {
        yield { type: "started", model: "cached" };
        yield {
          type: "completed",
          result: {
            success: true,
            output: `hit for ${ctx.header("x-user")}`,
            model: "cached",
            finishReason: "stop",
            usage: { inputTokens: 0, outputTokens: 0 },
            durationMs: 0,
            metadata: { cache: "hit" },
          },
        };
      },
    };
    const run = await runMiddleware([tag("outer"), tag("inner"), cached], { headers: { "X-User": "bob" } });
    expect(order).toEqual(["outer", "inner"]);
    expect(run.terminalCalls).toBe(0);
    expect(run.result?.output).toBe("hit for bob");
    expect([...run.context.state.keys()]).toEqual(["outer", "inner"]);
  });

  it("calling next() twice is INTERNAL, as on the server", async () => {
    const twice: Middleware = {
      name: "twice",
      async *process(_ctx, next) {
        await collect(next());
        yield* next();
      },
    };
    await expect(runMiddleware(twice)).rejects.toMatchObject({ code: Code.Internal, rawMessage: 'middleware "twice" called next() more than once' });
  });

  it("an unknown agent is NOT_FOUND at the terminal; a function terminal gets the context", async () => {
    const pass: Middleware = { name: "pass", process: (_ctx, next) => next() };
    await expect(runMiddleware(pass, { agentId: "nobody" })).rejects.toMatchObject({ code: Code.NotFound });
    const run = await runMiddleware(
      pass,
      { task: "x", principal: { id: "p", admin: false, roles: [], method: "test" } },
      async function* (ctx): AsyncIterable<RunEvent> {
        yield { type: "delta", text: `${ctx.principal?.id}:${ctx.task}` };
      },
    );
    expect(run.text).toBe("p:x");
    expect(run.result).toBeUndefined();
  });

  it("a cancelled call ends with the signal's reason", async () => {
    const reason = new ConnectError("client went away", Code.Canceled);
    const controller = new AbortController();
    const cancelling: Middleware = {
      name: "cancelling",
      async *process(_ctx, next) {
        for await (const event of next()) {
          if (event.type === "delta") controller.abort(reason);
          yield event;
        }
      },
    };
    await expect(runMiddleware(cancelling, { task: "one two three", signal: controller.signal })).rejects.toBe(reason);
  });
});

describe("runProvider with the canned example", () => {
  it("collects chunks, text and finish", async () => {
    const { product } = await setUp(canned, { replies: { hours: "We are open 9 to 5." } });
    const run = await runProvider(product, { model: "canned-1", messages: [{ role: "user", content: "Your hours?" }] });
    expect(run.text).toBe("We are open 9 to 5.");
    expect(run.chunks.filter((c) => c.type === "delta")).toHaveLength(6);
    expect(run.finish).toEqual({ type: "finish", finishReason: "stop", model: "canned-1", usage: { inputTokens: 2, outputTokens: 6 } });
    expect(run.chunks.at(-1)).toBe(run.finish);
  });

  it("rejects with the provider's ProviderError", async () => {
    const { product } = await setUp(canned, { replies: {} });
    const err = await runProvider(product, "anything").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ code: Code.Unavailable, retryable: false });
  });

  it("honours an abort: the provider stops, and the call rejects with the signal's reason", async () => {
    const { product } = await setUp(canned, { replies: { hours: "one two three four five six seven eight" }, delayMs: 50 });
    const reason = new ConnectError("deadline passed", Code.DeadlineExceeded);
    const aborted = runProvider(product, "hours", AbortSignal.timeout(50));
    // Eight words at 50 ms each end no sooner than a 400 ms timer started now: settling first, it stopped at the abort.
    expect(await settlesBefore(aborted, 400)).toBe(true);
    await expect(aborted).rejects.toMatchObject({ code: Code.Canceled });
    await expect(runProvider(product, "hours", AbortSignal.abort(reason))).rejects.toBe(reason);
  });

  it("closes the provider's stream when the signal aborts mid-stream", async () => {
    let closed = false;
    const controller = new AbortController();
    const endless: LlmProvider = {
      async *stream() {
        try {
          for (let i = 0; ; i++) {
            if (i === 3) controller.abort();
            yield { type: "delta", text: "x" };
          }
        } finally {
          closed = true;
        }
      },
    };
    await expect(runProvider(endless, "go", controller.signal)).rejects.toMatchObject({ code: Code.Canceled });
    expect(closed).toBe(true);
  });

  it("refuses a chunk after the finish", async () => {
    const sloppy: LlmProvider = {
      async *stream() {
        yield { type: "finish", finishReason: "stop" };
        yield { type: "delta", text: "late" };
      },
    };
    await expect(runProvider(sloppy, "go")).rejects.toThrow(/after its finish chunk/);
  });
});

describe("the test host", () => {
  const dir = mkdtempSync(join(tmpdir(), "qingyu-testing-host-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("records what a plugin logs and publishes; env, agents, providers, redis and postgres are the test's", async () => {
    const backup: LlmProvider = { async *stream() {} };
    const probe = definePlugin({
      name: "probe",
      kind: "llm-provider",
      async setup(host) {
        host.logger.child({ part: "setup" }).debug({ region: host.env.REGION }, "setting up %s", "probe");
        host.events.publish({ type: "AGENT_STARTED", agentId: host.agents.list()[0]!.id, data: { n: 1 } });
        expect(() => host.redis()).toThrow(/no Redis/);
        expect(host.postgres<string>()).toBe("pool");
        expect(await host.provider("backup")).toBe(backup);
        await expect(host.provider("other")).rejects.toThrow(/no provider "other"/);
        expect(host.resolvePath("a.txt")).toBe("a.txt");
        host.tracer.startActiveSpan("x", (span) => span.setAttribute("k", 1).end());
        host.meter.createCounter("c").add(1);
        return backup;
      },
    });
    const seen: string[] = [];
    const { logs, events, host } = await setUp(probe, undefined, { env: { REGION: "eu" }, postgres: "pool", providers: { backup } });
    expect(logs).toEqual([{ level: "debug", plugin: "probe", part: "setup", region: "eu", msg: "setting up probe" }]);
    expect(events).toEqual([
      expect.objectContaining({ type: "AGENT_STARTED", agentId: "echo", data: { n: 1 }, id: expect.any(String), time: expect.any(Date) }),
    ]);
    host.events.subscribe(["AGENT_COMPLETED"], (e) => void seen.push(e.type));
    host.events.subscribe("any", () => {
      throw new Error("handler broke");
    });
    host.events.publish({ type: "AGENT_COMPLETED", data: {} });
    expect(seen).toEqual([]);
    await host.events.settled();
    expect(seen).toEqual(["AGENT_COMPLETED"]);
    expect(logs.at(-1)).toMatchObject({ level: "error", msg: "event handler failed", eventType: "AGENT_COMPLETED" });
  });

  it("sets up the event-log example with resolvePath, feeds it events, and disposes it", async () => {
    const { product, dispose } = await setUp(eventLog, { path: "events.jsonl", types: ["AGENT_COMPLETED"] }, { resolvePath: (p) => join(dir, p) });
    expect(product.types).toEqual(["AGENT_COMPLETED"]);
    await product.handle(runtimeEvent({ type: "AGENT_COMPLETED", agentId: "echo", data: { output: "hi" } }));
    await dispose();
    const lines = readFileSync(join(dir, "events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([expect.objectContaining({ type: "AGENT_COMPLETED", agentId: "echo", data: { output: "hi" } })]);
  });
});

describe("a plugin written against its own copy of the SDK", () => {
  const copy = useSdkCopy();

  it("runs through this copy's test host, and its errors are this copy's", async () => {
    const { sdk } = copy();
    const strict = sdk.definePlugin({
      name: "strict",
      kind: "middleware",
      setup: () => ({
        name: "strict",
        process(ctx, next) {
          if (!ctx.userId) throw new sdk.ConnectError("user_id is required", sdk.Code.Unauthenticated);
          return next();
        },
      }),
    });
    const { product } = await setUp(strict);
    await expect(runMiddleware(product)).rejects.toBeInstanceOf(ConnectError);
    expect((await runMiddleware(product, { userId: "alice", task: "hi" })).text).toBe("hi");
  });

  it("the copy's own test host runs plugins made with this copy", async () => {
    const { testing } = copy();
    const { product } = await testing.setUp(wordFilter, { words: ["secret"] });
    const run = await testing.runMiddleware(product, { task: "no secrets" }, ["a secret"]);
    expect(run.text).toBe("a ***");
    await expect(testing.runMiddleware(product, { task: "a secret" })).rejects.toBeInstanceOf(ConnectError);
  });
});
