import { Code, ConnectError, type LlmProvider, type ProviderChunk, ProviderError, type ProviderRequest } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import pino from "pino";
import { Writable } from "node:stream";
import fallback from "../../../src/plugins/builtin/fallback.ts";
import { rejection } from "../../support/rejection.ts";
import { setUpPlugin } from "../../support/plugin-context.ts";

/** A provider that fails with `code` before any token, or answers `text`, recording the models it was asked for. */
function scripted(outcome: { fail: Code; afterChunk?: boolean } | { text: string }) {
  const models: string[] = [];
  const provider: LlmProvider = {
    async *stream(req: ProviderRequest): AsyncIterable<ProviderChunk> {
      models.push(req.model);
      if ("fail" in outcome) {
        if (outcome.afterChunk) yield { type: "delta", text: "partial " };
        throw new ProviderError(`failed with ${outcome.fail}`, outcome.fail, true);
      }
      yield { type: "delta", text: outcome.text };
      yield { type: "finish", finishReason: "stop" };
    },
  };
  return { provider, models };
}

async function setUp(options: unknown, providers: Record<string, LlmProvider>, lines: string[] = []): Promise<LlmProvider> {
  const logger = pino({ level: "info" }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
  return setUpPlugin(fallback, options, { logger, providers });
}

async function text(stream: AsyncIterable<ProviderChunk>): Promise<string> {
  let out = "";
  for await (const chunk of stream) if (chunk.type === "delta") out += chunk.text;
  return out;
}

const req: ProviderRequest = { model: "main-model", messages: [{ role: "user", content: "hi" }] };

describe("fallback provider", () => {
  it("moves on when a provider is UNAVAILABLE or RESOURCE_EXHAUSTED, logging why", async () => {
    const a = scripted({ fail: Code.Unavailable });
    const b = scripted({ fail: Code.ResourceExhausted });
    const c = scripted({ text: "from c" });
    const lines: string[] = [];
    const p = await setUp({ providers: ["a", "b", "c"] }, { a: a.provider, b: b.provider, c: c.provider }, lines);
    expect(await text(p.stream(req, new AbortController().signal))).toBe("from c");
    expect([a.models.length, b.models.length, c.models.length]).toEqual([1, 1, 1]);
    expect(lines.filter((l) => l.includes("trying the next one"))).toHaveLength(2);
  });

  it("does not call later providers when the first answers", async () => {
    const a = scripted({ text: "from a" });
    const b = scripted({ text: "from b" });
    const p = await setUp({ providers: ["a", "b"] }, { a: a.provider, b: b.provider });
    expect(await text(p.stream(req, new AbortController().signal))).toBe("from a");
    expect(b.models).toEqual([]);
  });

  it("passes other failures straight to the caller", async () => {
    const a = scripted({ fail: Code.InvalidArgument });
    const b = scripted({ text: "from b" });
    const p = await setUp({ providers: ["a", "b"] }, { a: a.provider, b: b.provider });
    expect((await rejection(text(p.stream(req, new AbortController().signal)))).code).toBe(Code.InvalidArgument);
    expect(b.models).toEqual([]);
  });

  it("never moves on after a token reached the caller", async () => {
    const a = scripted({ fail: Code.Unavailable, afterChunk: true });
    const b = scripted({ text: "from b" });
    const p = await setUp({ providers: ["a", "b"] }, { a: a.provider, b: b.provider });
    expect((await rejection(text(p.stream(req, new AbortController().signal)))).code).toBe(Code.Unavailable);
    expect(b.models).toEqual([]);
  });

  it("fails with the last provider's error when all fail, keeping it retryable", async () => {
    const a = scripted({ fail: Code.Unavailable });
    const b = scripted({ fail: Code.ResourceExhausted });
    const p = await setUp({ providers: ["a", "b"] }, { a: a.provider, b: b.provider });
    const err = await rejection(text(p.stream(req, new AbortController().signal)));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).retryable).toBe(true);
  });

  it("asks each provider for its own model when one is configured", async () => {
    const a = scripted({ fail: Code.Unavailable });
    const b = scripted({ text: "ok" });
    const p = await setUp({ providers: ["a", { provider: "b", model: "small-model" }] }, { a: a.provider, b: b.provider });
    await text(p.stream(req, new AbortController().signal));
    expect(a.models).toEqual(["main-model"]);
    expect(b.models).toEqual(["small-model"]);
  });

  it("moves on for the codes configured in `on` only", async () => {
    const a = scripted({ fail: Code.DeadlineExceeded });
    const b = scripted({ text: "from b" });
    const p = await setUp({ providers: ["a", "b"], on: ["DEADLINE_EXCEEDED"] }, { a: a.provider, b: b.provider });
    expect(await text(p.stream(req, new AbortController().signal))).toBe("from b");
  });

  it("does not move on once the call is aborted", async () => {
    const controller = new AbortController();
    const a: LlmProvider = {
      async *stream() {
        controller.abort(new ConnectError("cancelled", Code.Canceled));
        throw new ConnectError("upstream aborted", Code.Unavailable);
      },
    };
    const b = scripted({ text: "from b" });
    const p = await setUp({ providers: ["a", "b"] }, { a, b: b.provider });
    await rejection(text(p.stream(req, controller.signal)));
    expect(b.models).toEqual([]);
  });

  it("refuses an empty provider list and unknown providers at setup", async () => {
    await expect(setUp({ providers: [] }, {})).rejects.toThrow();
    await expect(setUp({ providers: ["missing"] }, {})).rejects.toThrow(/no provider "missing"/);
  });
});
