import { Code, ConnectError, type LlmProvider, type ProviderChunk, ProviderError, type ProviderRequest, reasonOf } from "@qingyu/plugin-api";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import openaiPlugin from "../../../../src/plugins/builtin/openai/plugin.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../../../support/fake-openai.ts";
import { parseOptions, setUpPlugin } from "../../../support/plugin-context.ts";
import { settlesBefore } from "../../../support/settles-before.ts";

// Every provider set up here is disposed after its test, closing its pooled connections.
const made: LlmProvider[] = [];

async function setup(rawOptions: unknown, env: Record<string, string | undefined> = {}): Promise<LlmProvider> {
  const provider = await setUpPlugin(openaiPlugin, rawOptions, { env, agents: [] });
  made.push(provider);
  return provider;
}

afterEach(async () => {
  await Promise.all(made.splice(0).map((p) => p.dispose?.()));
});

const request: ProviderRequest = { model: "gpt-test", messages: [{ role: "user", content: "hello there" }] };

async function collect(stream: AsyncIterable<ProviderChunk>): Promise<ProviderChunk[]> {
  const out: ProviderChunk[] = [];
  for await (const chunk of stream) out.push(chunk);
  return out;
}

/** What a failed run rejects with, so tests can look at it closely. */
async function failure(run: Promise<unknown>): Promise<ProviderError> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  // Not toBeInstanceOf: ConnectError's Symbol.hasInstance only recognises errors named "ConnectError".
  expect(Object.getPrototypeOf(err)).toBe(ProviderError.prototype);
  return err as ProviderError;
}

let fake: FakeOpenAI;
let provider: LlmProvider;

beforeEach(async () => {
  fake = await startFakeOpenAI();
  provider = await setup({ baseUrl: fake.url, apiKey: "sk-test" });
});

afterEach(async () => {
  await fake.close();
});

describe("openai provider: streaming", () => {
  it("yields the deltas in order, then one finish with usage, model and finish reason", async () => {
    fake.enqueue({
      kind: "stream",
      chunks: ["Hel", "lo", ", world"],
      usage: { prompt_tokens: 7, completion_tokens: 3 },
      finishReason: "length",
    });

    const chunks = await collect(provider.stream({ ...request, temperature: 0.2, maxTokens: 64 }, new AbortController().signal));

    expect(chunks).toEqual([
      { type: "delta", text: "Hel" },
      { type: "delta", text: "lo" },
      { type: "delta", text: ", world" },
      { type: "finish", finishReason: "length", usage: { inputTokens: 7, outputTokens: 3 }, model: "gpt-test" },
    ]);
    const sent = fake.requests[0]!;
    expect(sent.headers.authorization).toBe("Bearer sk-test");
    expect(sent.body).toMatchObject({
      model: "gpt-test",
      messages: request.messages,
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.2,
      max_tokens: 64,
    });
  });

  it("passes agent extras through without letting them turn streaming off", async () => {
    await collect(provider.stream({ ...request, extra: { top_p: 0.5, stream: false } }, new AbortController().signal));

    expect(fake.requests[0]!.body).toMatchObject({ top_p: 0.5, stream: true });
    expect(fake.requests[0]!.body).not.toHaveProperty("max_tokens");
  });

  it("generate reads a streamed answer to its end and returns it whole (wholeAnswers: stream, the default)", async () => {
    fake.enqueue({ kind: "stream", chunks: ["all ", "at ", "once"], usage: { prompt_tokens: 2, completion_tokens: 3 }, finishReason: "length" });

    const result = await provider.generate!(request, new AbortController().signal);

    expect(result).toEqual({ text: "all at once", finishReason: "length", usage: { inputTokens: 2, outputTokens: 3 }, model: "gpt-test" });
    expect(fake.requests[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it("generate with wholeAnswers: json asks for one non-streamed completion", async () => {
    const json = await setup({ baseUrl: fake.url, apiKey: "sk-test", wholeAnswers: "json" });
    fake.enqueue({ kind: "json", content: "all at once", usage: { prompt_tokens: 2, completion_tokens: 3 } });

    const result = await json.generate!(request, new AbortController().signal);

    expect(result).toEqual({ text: "all at once", finishReason: "stop", usage: { inputTokens: 2, outputTokens: 3 }, model: "gpt-test" });
    expect(fake.requests[0]!.body.stream).toBe(false);
  });

  it("generate returns the tool calls of a streamed answer, complete", async () => {
    fake.enqueue({
      kind: "deltas",
      deltas: [
        { content: "Let me look. " },
        { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "weather", arguments: '{"city":' } }] },
        { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] },
      ],
      finishReason: "tool_calls",
    });

    const result = await provider.generate!(request, new AbortController().signal);

    expect(result).toMatchObject({
      text: "Let me look. ",
      finishReason: "tool_calls",
      toolCalls: [{ id: "call_1", name: "weather", arguments: '{"city":"Paris"}' }],
    });
  });
});

describe("openai provider: upstream errors", () => {
  it("429 with Retry-After is RESOURCE_EXHAUSTED, retryable, with the delay", async () => {
    fake.enqueue({
      kind: "error",
      status: 429,
      headers: { "retry-after": "2" },
      body: { error: { message: "Rate limit reached for gpt-test", type: "requests", param: null, code: "rate_limit_exceeded" } },
    });

    const err = await failure(collect(provider.stream(request, new AbortController().signal)));

    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBe(2000);
    expect(err.rawMessage).toBe("openai provider: upstream answered 429 Too Many Requests: Rate limit reached for gpt-test");
    // The provider's rate limit, not the caller's: a client tells the two apart by the reason.
    expect(reasonOf(err)).toEqual({ reason: "PROVIDER_RATE_LIMITED", metadata: { retry_after_ms: "2000" } });
  });

  it("prefers retry-after-ms, and understands an HTTP-date Retry-After", async () => {
    fake.enqueue(
      { kind: "error", status: 429, headers: { "retry-after-ms": "1500", "retry-after": "9" } },
      { kind: "error", status: 503, headers: { "retry-after": new Date(Date.now() + 60_000).toUTCString() } },
    );

    const first = await failure(collect(provider.stream(request, new AbortController().signal)));
    const second = await failure(collect(provider.stream(request, new AbortController().signal)));

    expect(first.retryAfterMs).toBe(1500);
    expect(second.code).toBe(Code.Unavailable);
    // A minute ahead, whole seconds: 59-60 s less the time since, for which 9 s is ample on any machine.
    expect(second.retryAfterMs).toBeGreaterThan(50_000);
    expect(second.retryAfterMs).toBeLessThanOrEqual(60_000);
  });

  it.each([
    [500, Code.Unavailable, true],
    [502, Code.Unavailable, true],
    [408, Code.Unavailable, true],
    [409, Code.Unavailable, true],
    [401, Code.Unauthenticated, false],
    [403, Code.PermissionDenied, false],
    [400, Code.InvalidArgument, false],
    [422, Code.InvalidArgument, false],
  ])("%i becomes %s (retryable: %s)", async (status, code, retryable) => {
    fake.enqueue({ kind: "error", status, body: { error: { message: "upstream says no", type: "x", param: null, code: null } } });

    const err = await failure(collect(provider.stream(request, new AbortController().signal)));

    expect(err.code).toBe(code);
    expect(err.retryable).toBe(retryable);
    expect(err.rawMessage).toMatch(new RegExp(`^openai provider: upstream answered ${status} .*: upstream says no$`));
  });

  it("404 is NOT_FOUND and names the model", async () => {
    fake.enqueue({
      kind: "error",
      status: 404,
      body: { error: { message: "The model `gpt-test` does not exist", type: "invalid_request_error", param: null, code: "model_not_found" } },
    });

    const err = await failure(collect(provider.stream(request, new AbortController().signal)));

    expect(err.code).toBe(Code.NotFound);
    expect(err.retryable).toBe(false);
    expect(err.rawMessage).toBe(
      `openai provider: upstream answered 404 Not Found for model "gpt-test" at POST ${fake.url}/chat/completions: The model \`gpt-test\` does not exist`,
    );
    expect(reasonOf(err).reason).toBe("PROVIDER_REJECTED");
  });

  it("a 404 from a base URL without /v1 names the URL not found and hints at /v1 (Ollama answers its root's unknown paths so)", async () => {
    const ollama = createServer((req, res) => {
      req.resume();
      res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found");
    });
    await new Promise<void>((resolve) => ollama.listen(0, "127.0.0.1", resolve));
    try {
      const root = `http://127.0.0.1:${(ollama.address() as AddressInfo).port}`;
      const misconfigured = await setup({ baseUrl: root, apiKey: "sk-test" });
      for (const run of [
        collect(misconfigured.stream(request, new AbortController().signal)),
        misconfigured.generate!(request, new AbortController().signal),
      ]) {
        const err = await failure(run);
        expect(err.code).toBe(Code.NotFound);
        expect(err.rawMessage).toBe(
          `openai provider: upstream answered 404 Not Found for model "gpt-test" at POST ${root}/chat/completions: 404 page not found` +
            ` (the base URL ${root} has no /v1, where OpenAI-compatible servers serve the API: set the provider's baseUrl or OPENAI_BASE_URL to ${root}/v1)`,
        );
      }
    } finally {
      ollama.closeAllConnections();
      await new Promise((resolve) => ollama.close(resolve));
    }
  });

  it("generate maps errors the same way", async () => {
    fake.enqueue({ kind: "error", status: 401 });

    const err = await failure(provider.generate!(request, new AbortController().signal));

    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.retryable).toBe(false);
  });

  it("a refused connection is UNAVAILABLE and retryable", async () => {
    const gone = await startFakeOpenAI();
    await gone.close();
    const unreachable = await setup({ baseUrl: gone.url, apiKey: "sk-test" });

    const err = await failure(collect(unreachable.stream(request, new AbortController().signal)));

    expect(err.code).toBe(Code.Unavailable);
    expect(err.retryable).toBe(true);
    expect(err.rawMessage).toContain(`openai provider: could not reach ${gone.url}`);
  });

  it("an upstream slower than timeoutMs is UNAVAILABLE, retryable, and says it timed out", async () => {
    fake.enqueue({ kind: "hang" });
    const impatient = await setup({ baseUrl: fake.url, apiKey: "sk-test", timeoutMs: 50 });

    const err = await failure(collect(impatient.stream(request, new AbortController().signal)));

    expect(err.code).toBe(Code.Unavailable);
    expect(err.retryable).toBe(true);
    expect(err.rawMessage).toContain("timed out");
    await fake.waitForClose(0, 5_000);
  });
});

describe("openai provider: idle timeout", () => {
  const waitFor = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it("a stream that stalls after a chunk ends within idleTimeoutMs as UNAVAILABLE, not retryable, and closes the upstream", async () => {
    fake.enqueue({ kind: "stream-then-hang", chunks: ["partial"] });
    const watchful = await setup({ baseUrl: fake.url, apiKey: "sk-test", idleTimeoutMs: 150 });
    const seen: string[] = [];
    const started = Date.now();

    const reading = (async () => {
      for await (const chunk of watchful.stream(request, new AbortController().signal)) if (chunk.type === "delta") seen.push(chunk.text);
    })();
    // The upstream never sends more: settling at all is the idle timeout's doing (the bound is only the test's patience).
    expect(await settlesBefore(reading, 5_000)).toBe(true);
    const err = await failure(reading);

    const elapsed = Date.now() - started;
    expect(seen).toEqual(["partial"]);
    expect(err.code).toBe(Code.Unavailable);
    expect(err.retryable).toBe(false);
    expect(err.rawMessage).toBe(`openai provider: ${fake.url} sent nothing for 150 ms (idleTimeoutMs); the response stalled`);
    // Not before the timeout either: a lower bound, which load only makes hold by more.
    expect(elapsed).toBeGreaterThanOrEqual(140);
    await fake.waitForClose(0, 5_000);
  });

  it("a stall before the first chunk is retryable", async () => {
    fake.enqueue({ kind: "stream-then-hang", chunks: [] });
    const watchful = await setup({ baseUrl: fake.url, apiKey: "sk-test", idleTimeoutMs: 100 });

    const err = await failure(collect(watchful.stream(request, new AbortController().signal)));

    expect(err.code).toBe(Code.Unavailable);
    expect(err.retryable).toBe(true);
    await fake.waitForClose(0, 5_000);
  });

  it("chunks arriving more often than idleTimeoutMs keep the stream alive, however long it runs", async () => {
    fake.enqueue({ kind: "stream", chunks: ["a", "b", "c", "d", "e", "f"], delayMs: 60 });
    const watchful = await setup({ baseUrl: fake.url, apiKey: "sk-test", idleTimeoutMs: 150 });

    const chunks = await collect(watchful.stream(request, new AbortController().signal));

    expect(chunks.filter((c) => c.type === "delta")).toHaveLength(6);
    expect(chunks.at(-1)?.type).toBe("finish");
  });

  it("time the consumer holds a chunk is not counted as upstream silence", async () => {
    fake.enqueue({ kind: "stream", chunks: ["a", "b"] });
    const watchful = await setup({ baseUrl: fake.url, apiKey: "sk-test", idleTimeoutMs: 100 });
    const texts: string[] = [];

    for await (const chunk of watchful.stream(request, new AbortController().signal)) {
      if (chunk.type === "delta") texts.push(chunk.text);
      await waitFor(250);
    }

    expect(texts).toEqual(["a", "b"]);
  });

  it("generate: a body that stalls after the headers ends within idleTimeoutMs and closes the connection", async () => {
    // The fake answers a non-streamed request all at once; this one sends headers and then nothing.
    let closed!: () => void;
    const socketClosed = new Promise<void>((resolve) => (closed = resolve));
    const stalling = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"id":"chatcmpl-1",');
      res.on("close", closed);
    });
    await new Promise<void>((resolve) => stalling.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(stalling.address() as AddressInfo).port}/v1`;
      const watchful = await setup({ baseUrl: url, apiKey: "sk-test", idleTimeoutMs: 150 });
      const generating = watchful.generate!(request, new AbortController().signal);
      // The body never completes: settling at all is the idle timeout's doing.
      expect(await settlesBefore(generating, 5_000)).toBe(true);
      const err = await failure(generating);

      expect(err.code).toBe(Code.Unavailable);
      expect(err.retryable).toBe(true);
      expect(err.rawMessage).toContain("sent nothing for 150 ms");
      await socketClosed;
    } finally {
      stalling.closeAllConnections();
      await new Promise((resolve) => stalling.close(resolve));
    }
  });

  it("generate: an upstream that never answers is ended by timeoutMs", async () => {
    fake.enqueue({ kind: "hang" });
    const impatient = await setup({ baseUrl: fake.url, apiKey: "sk-test", timeoutMs: 100 });

    const err = await failure(impatient.generate!(request, new AbortController().signal));

    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toContain("timed out");
    await fake.waitForClose(0, 5_000);
  });

  it("defaults to 30 s", async () => {
    expect(
      (await parseOptions(openaiPlugin, {})).success && ((await parseOptions(openaiPlugin, {})) as { data: { idleTimeoutMs: number } }).data.idleTimeoutMs,
    ).toBe(30_000);
  });
});

describe("openai provider: cancellation", () => {
  it("aborting mid-stream rejects with the signal's reason and closes the upstream request", async () => {
    fake.enqueue({ kind: "stream", chunks: Array.from({ length: 20 }, (_, i) => `c${i} `), delayMs: 20 });
    const controller = new AbortController();
    const reason = new ConnectError("the client went away", Code.Canceled);
    const stream = provider.stream(request, controller.signal)[Symbol.asyncIterator]();

    expect(await stream.next()).toEqual({ done: false, value: { type: "delta", text: "c0 " } });
    expect(await stream.next()).toEqual({ done: false, value: { type: "delta", text: "c1 " } });
    controller.abort(reason);

    await expect(stream.next()).rejects.toBe(reason);
    await fake.waitForClose(0, 5_000);
    // Closed before the upstream had written its whole answer: the abort ended it, not the answer's end.
    const written = fake.requests[0]!.chunksWritten;
    expect(written).toBeLessThan(20);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(fake.requests[0]!.chunksWritten).toBe(written);
  });

  it("a timeout-style abort of a hanging upstream ends promptly with the signal's reason", async () => {
    fake.enqueue({ kind: "hang" });
    const signal = AbortSignal.timeout(50);

    const streaming = collect(provider.stream(request, signal));
    // The upstream never answers: settling at all is the abort's doing.
    expect(await settlesBefore(streaming, 5_000)).toBe(true);
    const err = await streaming.catch((e: unknown) => e);

    expect(err).toBe(signal.reason);
    expect((err as Error).name).toBe("TimeoutError");
    await fake.waitForClose(0, 5_000);
  });

  it("a deadline during a hanging generate rejects with the runtime's DEADLINE_EXCEEDED, unwrapped", async () => {
    fake.enqueue({ kind: "hang" });
    const controller = new AbortController();
    const reason = new ConnectError("deadline exceeded", Code.DeadlineExceeded);
    setTimeout(() => controller.abort(reason), 30);

    await expect(provider.generate!(request, controller.signal)).rejects.toBe(reason);
    await fake.waitForClose(0, 5_000);
  });

  it("a stream that stalls after some chunks still ends on abort", async () => {
    fake.enqueue({ kind: "stream-then-hang", chunks: ["a", "b"] });
    const controller = new AbortController();
    const reason = new ConnectError("cancelled", Code.Canceled);
    const seen: string[] = [];

    const run = (async () => {
      for await (const chunk of provider.stream(request, controller.signal)) {
        if (chunk.type === "delta") seen.push(chunk.text);
        if (seen.length === 2) setTimeout(() => controller.abort(reason), 10);
      }
    })();

    await expect(run).rejects.toBe(reason);
    expect(seen).toEqual(["a", "b"]);
    await fake.waitForClose(0, 5_000);
  });

  it("an already-aborted signal sends nothing upstream", async () => {
    const controller = new AbortController();
    const reason = new ConnectError("cancelled", Code.Canceled);
    controller.abort(reason);

    await expect(collect(provider.stream(request, controller.signal))).rejects.toBe(reason);
    expect(fake.requests).toHaveLength(0);
  });
});

describe("openai provider: setup", () => {
  it("fails with a message naming OPENAI_API_KEY when no key is configured", async () => {
    await expect(setup({ baseUrl: fake.url }, {})).rejects.toThrow(/OPENAI_API_KEY/);
  });

  it("takes base URL and key from host.env when the options leave them out", async () => {
    const fromEnv = await setup({}, { OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: "sk-from-env" });

    const chunks = await collect(fromEnv.stream(request, new AbortController().signal));

    expect(
      chunks
        .filter((c) => c.type === "delta")
        .map((c) => (c as { text: string }).text)
        .join(""),
    ).toBe("hello there");
    expect(fake.requests[0]!.headers.authorization).toBe("Bearer sk-from-env");
  });

  it("lets options win over host.env and sends organization and extra headers", async () => {
    const other = await startFakeOpenAI();
    try {
      const configured = await setup(
        { baseUrl: fake.url, apiKey: "sk-option", organization: "org-1", headers: { "x-gateway": "yes" } },
        { OPENAI_BASE_URL: other.url, OPENAI_API_KEY: "sk-env" },
      );

      await collect(configured.stream(request, new AbortController().signal));

      expect(other.requests).toHaveLength(0);
      const headers = fake.requests[0]!.headers;
      expect(headers.authorization).toBe("Bearer sk-option");
      expect(headers["openai-organization"]).toBe("org-1");
      expect(headers["x-gateway"]).toBe("yes");
    } finally {
      await other.close();
    }
  });

  it("rejects unknown options", async () => {
    expect(await parseOptions(openaiPlugin, { apiKey: "k", retries: 3 })).toMatchObject({
      success: false,
      error: expect.stringContaining('unknown key "retries"'),
    });
  });
});
