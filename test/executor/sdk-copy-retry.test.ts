// A provider plugin installed with its own copy of @qingyu/plugin-api throws
// that copy's ProviderError: the executor must retry it exactly as it retries
// the built-in's, since errors are recognised by shape, not by identity.
import { type AgentDefinition, Code, type LlmProvider, type ProviderChunk, ProviderError, type ProviderRequest, type RunEvent } from "@qingyu/plugin-api";
import { afterEach, describe, expect, it } from "vitest";
import { Executor } from "../../src/executor/executor.ts";
import type { ExecuteInput } from "../../src/executor/context.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { testExecutor } from "../support/executor.ts";
import { rejection } from "../support/rejection.ts";
import { useSdkCopy } from "../support/sdk-copy.ts";

const copy = useSdkCopy();

const agent: AgentDefinition = { id: "helper", description: "", provider: "plugin", model: "plugin-model", systemPrompt: "", defaults: {} };

const stores: SessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

/** A provider that runs `script` per attempt and counts the attempts. */
function provider(script: (attempt: number) => AsyncIterable<ProviderChunk>): LlmProvider & { attempts: ProviderRequest[] } {
  const attempts: ProviderRequest[] = [];
  return {
    attempts,
    stream(req) {
      attempts.push(req);
      return script(attempts.length);
    },
  };
}

function executor(p: LlmProvider): Executor {
  const { executor, store } = testExecutor({ agents: [agent], providers: { plugin: p }, retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1000 } });
  stores.push(store);
  return executor;
}

const input: ExecuteInput = { agentId: "helper", task: "hello", sessionId: "", userId: "alice", metadata: {}, options: {} };
const call = () => ({ signal: new AbortController().signal, header: () => undefined });

async function collect(stream: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of stream) out.push(event);
  return out;
}

describe("Executor: a ProviderError from a separately installed copy of the SDK", () => {
  it("is another copy's class, yet recognised as a ProviderError", () => {
    const { sdk } = copy();
    expect(sdk.ProviderError).not.toBe(ProviderError);
    expect(new sdk.ProviderError("x", sdk.Code.Unavailable, true) instanceof ProviderError).toBe(true);
  });

  for (const [name, make] of [
    ["the copy's", () => new (copy().sdk.ProviderError)("upstream down", copy().sdk.Code.Unavailable, true)],
    ["the built-in", () => new ProviderError("upstream down", Code.Unavailable, true)],
  ] as const) {
    it(`retries ${name} retryable UNAVAILABLE: the call succeeds on the second attempt`, async () => {
      const p = provider(async function* (attempt) {
        if (attempt === 1) throw make();
        yield { type: "delta", text: "second time lucky" };
        yield { type: "finish", finishReason: "stop" };
      });
      const events = await collect(executor(p).stream(input, call()));
      expect(p.attempts).toHaveLength(2);
      expect(events.map((e) => e.type)).toEqual(["started", "delta", "completed"]);
      expect(events.at(-1)).toMatchObject({ type: "completed", result: { success: true, output: "second time lucky" } });
    });
  }

  it("gives up after maxAttempts with the copy's code", async () => {
    const { sdk } = copy();
    const p = provider(async function* () {
      throw new sdk.ProviderError("upstream down", sdk.Code.Unavailable, true);
    });
    const err = await rejection(executor(p).execute(input, call()));
    expect(err.code).toBe(Code.Unavailable);
    expect(p.attempts).toHaveLength(3);
  });

  it("does not retry the copy's non-retryable ProviderError, which reaches the caller with its code", async () => {
    const { sdk } = copy();
    const thrown = new sdk.ProviderError("bad model", sdk.Code.InvalidArgument, false);
    const p = provider(async function* () {
      throw thrown;
    });
    const err = await rejection(executor(p).execute(input, call()));
    expect(p.attempts).toHaveLength(1);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("bad model");
    expect(err).toBe(thrown);
  });
});
