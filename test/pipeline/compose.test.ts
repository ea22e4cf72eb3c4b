import { type AgentContext, type AgentRunResult, Code, ConnectError, type Middleware, type Next, type RunEvent } from "@qingyu/plugin-api";
import { describe, it, expect } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { compose, type StageObserver } from "../../src/pipeline/compose.ts";
import type { Terminal } from "../../src/pipeline/types.ts";

function result(output: string): AgentRunResult {
  return {
    success: true,
    output,
    model: "m",
    finishReason: "stop",
    usage: { inputTokens: 0, outputTokens: 0 },
    durationMs: 0,
    metadata: {},
  };
}

/** A minimal context; compose only passes it through. */
function context(task = "task"): AgentContext {
  return {
    callId: `call-${task}`,
    agentId: "agent",
    agent: undefined,
    userId: "u",
    requestedUserId: "u",
    principal: undefined,
    sessionId: "",
    task,
    metadata: {},
    options: {},
    signal: new AbortController().signal,
    startTime: Date.now(),
    header: () => undefined,
    session: async () => undefined,
    history: async () => [],
    state: new Map(),
  };
}

async function collect(stream: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of stream) out.push(event);
  return out;
}

async function rejection(run: Promise<unknown>): Promise<unknown> {
  return run.then(
    () => {
      throw new Error("expected a rejection");
    },
    (err: unknown) => err,
  );
}

/** A terminal that echoes the task and records that it ran. */
function echoTerminal(log: string[] = []): Terminal {
  return async function* (ctx) {
    log.push("terminal");
    yield { type: "started", model: "m" };
    yield { type: "delta", text: ctx.task };
    yield { type: "completed", result: result(ctx.task) };
  };
}

/** A middleware that logs before and after running the rest of the onion. */
function tracing(name: string, log: string[]): Middleware {
  return {
    name,
    async *process(_ctx, next) {
      log.push(`${name}:pre`);
      yield* next();
      log.push(`${name}:post`);
    },
  };
}

describe("compose", () => {
  it("runs pre-processing outermost first and post-processing in reverse", async () => {
    const log: string[] = [];
    const pipeline = compose([tracing("a", log), tracing("b", log), tracing("c", log)], echoTerminal(log));
    const events = await collect(pipeline(context("hello")));
    expect(log).toEqual(["a:pre", "b:pre", "c:pre", "terminal", "c:post", "b:post", "a:post"]);
    expect(events).toEqual([
      { type: "started", model: "m" },
      { type: "delta", text: "hello" },
      { type: "completed", result: result("hello") },
    ]);
  });

  it("with no middleware runs just the terminal", async () => {
    const log: string[] = [];
    const events = await collect(compose([], echoTerminal(log))(context("x")));
    expect(log).toEqual(["terminal"]);
    expect(events.map((e) => e.type)).toEqual(["started", "delta", "completed"]);
  });

  it("lets middleware transform events flowing out", async () => {
    const upper: Middleware = {
      name: "upper",
      async *process(_ctx, next) {
        for await (const event of next()) {
          yield event.type === "delta" ? { type: "delta", text: event.text.toUpperCase() } : event;
        }
      },
    };
    const events = await collect(compose([upper], echoTerminal())(context("shout")));
    expect(events[1]).toEqual({ type: "delta", text: "SHOUT" });
  });

  it("short-circuits when a middleware does not call next: its events, and the rest never runs", async () => {
    const log: string[] = [];
    const cache: Middleware = {
      name: "cache",
      async *process() {
        log.push("cache:hit");
        yield { type: "completed", result: result("cached") };
      },
    };
    const pipeline = compose([tracing("outer", log), cache, tracing("inner", log)], echoTerminal(log));
    const events = await collect(pipeline(context()));
    expect(events).toEqual([{ type: "completed", result: result("cached") }]);
    expect(log).toEqual(["outer:pre", "cache:hit", "outer:post"]);
  });

  it("a second call of next() in one call throws INTERNAL naming the middleware, and the terminal runs once", async () => {
    const log: string[] = [];
    const twice: Middleware = {
      name: "greedy",
      async *process(_ctx, next) {
        yield* next();
        yield* next();
      },
    };
    const err = await rejection(collect(compose([twice], echoTerminal(log))(context())));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Internal);
    expect((err as ConnectError).rawMessage).toContain('"greedy"');
    expect((err as ConnectError).rawMessage).toContain("next()");
    expect(log).toEqual(["terminal"]);
  });

  it("a second call of next() is caught even when the inner layer short-circuited", async () => {
    const inner: Middleware = {
      name: "inner",
      async *process() {
        yield { type: "completed", result: result("inner") };
      },
    };
    const outer: Middleware = {
      name: "outer-twice",
      async *process(_ctx, next) {
        next();
        yield* next();
      },
    };
    const err = await rejection(collect(compose([outer, inner], echoTerminal())(context())));
    expect((err as ConnectError).code).toBe(Code.Internal);
    expect((err as ConnectError).rawMessage).toContain('"outer-twice"');
  });

  it.each([
    ["null", null],
    ["a function", (_ctx: AgentContext, next: Next) => next()],
    ["an object without process", { name: "nope" }],
    ["an object whose process is not a function", { name: "nope", process: "yes" }],
  ])("rejects %s in the chain with a TypeError at compose time", (_label, bad) => {
    const log: string[] = [];
    expect(() => compose([tracing("ok", log), bad as unknown as Middleware], echoTerminal())).toThrow(TypeError);
    expect(() => compose([tracing("ok", log), bad as unknown as Middleware], echoTerminal())).toThrow(/entry 1/);
    expect(log).toEqual([]);
  });

  it("rejects a terminal that is not a function", () => {
    expect(() => compose([], "terminal" as unknown as Terminal)).toThrow(TypeError);
  });

  it.each([
    ["an array", () => [{ type: "completed" }]],
    ["a promise", async () => ({ type: "completed" })],
    ["undefined", () => undefined],
  ])("a middleware returning %s (not an async iterable) throws INTERNAL naming it", (_label, process) => {
    const bad = { name: "sloppy", process } as unknown as Middleware;
    const pipeline = compose([bad], echoTerminal());
    let err: unknown;
    try {
      pipeline(context());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Internal);
    expect((err as ConnectError).rawMessage).toContain('"sloppy"');
  });

  it("an inner middleware returning a non-iterable fails the call when the outer one calls next()", async () => {
    const bad = { name: "inner-sloppy", process: () => 42 } as unknown as Middleware;
    const err = await rejection(collect(compose([tracing("outer", []), bad], echoTerminal())(context())));
    expect((err as ConnectError).code).toBe(Code.Internal);
    expect((err as ConnectError).rawMessage).toContain('"inner-sloppy"');
  });

  it("errors from the terminal propagate out through post-processing, which can catch and rethrow", async () => {
    const log: string[] = [];
    const boom = new ConnectError("provider down", Code.Unavailable);
    const failing: Terminal = async function* () {
      yield { type: "started", model: "m" };
      throw boom;
    };
    const catcher: Middleware = {
      name: "catcher",
      async *process(_ctx, next) {
        try {
          yield* next();
        } catch (err) {
          log.push(`caught:${(err as ConnectError).code}`);
          throw err;
        } finally {
          log.push("finally");
        }
      },
    };
    const seen: RunEvent[] = [];
    const err = await rejection(
      (async () => {
        for await (const event of compose([tracing("outer", log), catcher], failing)(context())) seen.push(event);
      })(),
    );
    expect(err).toBe(boom);
    expect(seen).toEqual([{ type: "started", model: "m" }]);
    // The outer layer's post-processing after next() does not run: the error passes through it.
    expect(log).toEqual(["outer:pre", `caught:${Code.Unavailable}`, "finally"]);
  });

  it("a middleware can turn a terminal error into its own result", async () => {
    const failing: Terminal = async function* () {
      throw new ConnectError("provider down", Code.Unavailable);
    };
    const fallback: Middleware = {
      name: "fallback",
      async *process(_ctx, next) {
        try {
          yield* next();
        } catch {
          yield { type: "completed", result: result("fallback") };
        }
      },
    };
    expect(await collect(compose([fallback], failing)(context()))).toEqual([{ type: "completed", result: result("fallback") }]);
  });

  it("a StageObserver wraps each middleware's stage, outermost first", async () => {
    const calls: string[] = [];
    const counts = new Map<string, number>();
    const observe: StageObserver = (mw, ctx, run) => {
      calls.push(`${mw.name}@${ctx.task}`);
      return (async function* () {
        for await (const event of run()) {
          counts.set(mw.name, (counts.get(mw.name) ?? 0) + 1);
          yield event;
        }
      })();
    };
    const pipeline = compose([tracing("a", []), tracing("b", [])], echoTerminal(), observe);
    const events = await collect(pipeline(context("t")));
    expect(events).toHaveLength(3);
    expect(calls).toEqual(["a@t", "b@t"]);
    expect(Object.fromEntries(counts)).toEqual({ a: 3, b: 3 });
  });

  it("a StageObserver's replacement is what the outer layer sees", async () => {
    const observe: StageObserver = (mw, _ctx, run) =>
      mw.name === "inner"
        ? (async function* () {
            for await (const event of run()) if (event.type !== "delta") yield event;
          })()
        : undefined;
    const outerSaw: string[] = [];
    const outer: Middleware = {
      name: "outer",
      async *process(_ctx, next) {
        for await (const event of next()) {
          outerSaw.push(event.type);
          yield event;
        }
      },
    };
    const events = await collect(compose([outer, tracing("inner", [])], echoTerminal(), observe)(context()));
    expect(outerSaw).toEqual(["started", "completed"]);
    expect(events.map((e) => e.type)).toEqual(["started", "completed"]);
  });

  it("next() is per call: concurrent calls of one pipeline do not interfere", async () => {
    const log: string[] = [];
    let terminalRuns = 0;
    const slow: Middleware = {
      name: "slow",
      async *process(ctx, next) {
        // Each call waits a different time, so the two calls' next() interleave.
        await sleep(ctx.task === "first" ? 20 : 1);
        yield* next();
      },
    };
    const terminal: Terminal = async function* (ctx) {
      terminalRuns++;
      yield { type: "completed", result: result(ctx.task) };
    };
    const pipeline = compose([tracing("a", log), slow], terminal);
    const [first, second] = await Promise.all([collect(pipeline(context("first"))), collect(pipeline(context("second")))]);
    expect(first).toEqual([{ type: "completed", result: result("first") }]);
    expect(second).toEqual([{ type: "completed", result: result("second") }]);
    expect(terminalRuns).toBe(2);
  });

  it("the same pipeline can be run again after a call completes", async () => {
    const pipeline = compose([tracing("a", [])], echoTerminal());
    await collect(pipeline(context("one")));
    const events = await collect(pipeline(context("two")));
    expect(events[1]).toEqual({ type: "delta", text: "two" });
  });
});
