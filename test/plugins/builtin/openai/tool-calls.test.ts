// The openai provider's tool calling against the local fake upstream: what it sends
// (tools, tool choice, structured output, tool-use history in OpenAI's shape) and how
// it assembles the streamed `delta.tool_calls` fragments the real wire format carries.
import { Code, type LlmProvider, type ProviderChunk, ProviderError, type ProviderRequest } from "@qingyu/plugin-api";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import openaiPlugin from "../../../../src/plugins/builtin/openai/plugin.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../../../support/fake-openai.ts";
import { setUpPlugin } from "../../../support/plugin-context.ts";

let fake: FakeOpenAI;
let provider: LlmProvider;

beforeEach(async () => {
  fake = await startFakeOpenAI();
  provider = await setUpPlugin(openaiPlugin, { baseUrl: fake.url, apiKey: "sk-test" }, { env: {}, agents: [] });
});

afterEach(async () => {
  await provider.dispose?.();
  await fake.close();
});

const weather = { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } } } };
const request: ProviderRequest = { model: "gpt-test", messages: [{ role: "user", content: "weather?" }], tools: [weather] };

async function collect(req: ProviderRequest = request): Promise<ProviderChunk[]> {
  const out: ProviderChunk[] = [];
  for await (const chunk of provider.stream(req, new AbortController().signal)) out.push(chunk);
  return out;
}

/** A fragment of `delta.tool_calls` as OpenAI writes it: id, type and name only in a call's first. */
const first = (index: number, id: string, name: string) => ({ index, id, type: "function", function: { name, arguments: "" } });
const args = (index: number, text: string) => ({ index, function: { arguments: text } });
const opening = (...fragments: object[]) => ({ role: "assistant", content: null, tool_calls: fragments, refusal: null });

const ofType = <T extends ProviderChunk["type"]>(chunks: ProviderChunk[], type: T) =>
  chunks.filter((c): c is Extract<ProviderChunk, { type: T }> => c.type === type);

describe("openai provider: streamed tool calls", () => {
  it("one call: a delta per fragment (id and name on the first), then the complete call, then finish", async () => {
    fake.enqueue({
      kind: "deltas",
      deltas: [opening(first(0, "call_A", "get_weather")), { tool_calls: [args(0, '{"city":')] }, { tool_calls: [args(0, '"Paris"}')] }],
      finishReason: "tool_calls",
      usage: { prompt_tokens: 9, completion_tokens: 4 },
    });

    expect(await collect()).toEqual([
      { type: "tool_call_delta", index: 0, id: "call_A", name: "get_weather", argumentsDelta: "" },
      { type: "tool_call_delta", index: 0, argumentsDelta: '{"city":' },
      { type: "tool_call_delta", index: 0, argumentsDelta: '"Paris"}' },
      { type: "tool_call", index: 0, call: { id: "call_A", name: "get_weather", arguments: '{"city":"Paris"}' } },
      { type: "finish", finishReason: "tool_calls", usage: { inputTokens: 9, outputTokens: 4 }, model: "gpt-test" },
    ]);
  });

  it("three calls in parallel with interleaved fragments: deltas in arrival order, complete calls in index order", async () => {
    fake.enqueue({
      kind: "deltas",
      deltas: [
        opening(first(0, "call_0", "get_weather")),
        { tool_calls: [args(0, '{"ci')] },
        { tool_calls: [first(1, "call_1", "get_weather"), first(2, "call_2", "get_time")] },
        { tool_calls: [args(2, '{"zone":"UTC"}')] },
        { tool_calls: [args(1, '{"city":"Oslo"}'), args(0, 'ty":"Rome"}')] },
      ],
      finishReason: "tool_calls",
    });

    const chunks = await collect();

    expect(ofType(chunks, "tool_call_delta").map((d) => [d.index, d.id ?? "", d.argumentsDelta])).toEqual([
      [0, "call_0", ""],
      [0, "", '{"ci'],
      [1, "call_1", ""],
      [2, "call_2", ""],
      [2, "", '{"zone":"UTC"}'],
      [1, "", '{"city":"Oslo"}'],
      [0, "", 'ty":"Rome"}'],
    ]);
    expect(ofType(chunks, "tool_call")).toEqual([
      { type: "tool_call", index: 0, call: { id: "call_0", name: "get_weather", arguments: '{"city":"Rome"}' } },
      { type: "tool_call", index: 1, call: { id: "call_1", name: "get_weather", arguments: '{"city":"Oslo"}' } },
      { type: "tool_call", index: 2, call: { id: "call_2", name: "get_time", arguments: '{"zone":"UTC"}' } },
    ]);
    // Every delta precedes every complete call, and finish comes last.
    expect(chunks.map((c) => c.type).join(",")).toBe(`${"tool_call_delta,".repeat(7)}tool_call,tool_call,tool_call,finish`);
  });

  it("arguments whose UTF-8 bytes the network splits mid-character arrive whole", async () => {
    fake.enqueue({
      kind: "deltas",
      deltas: [opening(first(0, "call_J", "get_weather")), { tool_calls: [args(0, '{"city":"日本')] }, { tool_calls: [args(0, ' 🗾"}')] }],
      finishReason: "tool_calls",
      splitCharacters: true,
    });

    const chunks = await collect();

    expect(ofType(chunks, "tool_call_delta").map((d) => d.argumentsDelta)).toEqual(["", '{"city":"日本', ' 🗾"}']);
    expect(ofType(chunks, "tool_call")[0]!.call.arguments).toBe('{"city":"日本 🗾"}');
    expect(JSON.parse(ofType(chunks, "tool_call")[0]!.call.arguments)).toEqual({ city: "日本 🗾" });
  });

  it("an emoji escaped as a surrogate pair and cut between two fragments: no delta carries half of it", async () => {
    // JSON.stringify writes a lone surrogate as its \ud83d escape: the wire holds valid JSON either side of the cut.
    fake.enqueue({
      kind: "deltas",
      deltas: [opening(first(0, "call_E", "get_weather")), { tool_calls: [args(0, '{"city":"\ud83d')] }, { tool_calls: [args(0, '\ude00"}')] }],
      finishReason: "tool_calls",
    });

    const chunks = await collect();

    const deltas = ofType(chunks, "tool_call_delta").map((d) => d.argumentsDelta);
    expect(deltas).toEqual(["", '{"city":"', '😀"}']);
    expect(ofType(chunks, "tool_call")[0]!.call.arguments).toBe('{"city":"😀"}');
  });

  it.each(["stop", "other"])("a server that finishes tool calls with %j still yields the calls, and the finish says what it said", async (finishReason) => {
    fake.enqueue({
      kind: "deltas",
      deltas: [
        { role: "assistant", content: "Let me look. " },
        { tool_calls: [{ ...first(0, "call_S", "get_weather"), function: { name: "get_weather", arguments: '{"city":"Lima"}' } }] },
      ],
      finishReason,
    });

    const chunks = await collect();

    expect(chunks[0]).toEqual({ type: "delta", text: "Let me look. " });
    expect(ofType(chunks, "tool_call")).toEqual([{ type: "tool_call", index: 0, call: { id: "call_S", name: "get_weather", arguments: '{"city":"Lima"}' } }]);
    expect(chunks.at(-1)).toMatchObject({ type: "finish", finishReason });
  });

  it("arguments that are not JSON are passed on as they came, for the runtime to tell the model", async () => {
    fake.enqueue({
      kind: "deltas",
      deltas: [opening(first(0, "call_M", "get_weather")), { tool_calls: [args(0, "{city: Paris")] }],
      finishReason: "tool_calls",
    });

    const calls = ofType(await collect(), "tool_call");

    expect(calls).toEqual([{ type: "tool_call", index: 0, call: { id: "call_M", name: "get_weather", arguments: "{city: Paris" } }]);
  });

  it("a call whose first fragment has no id or name is still passed on: the name from a later fragment, an id made up", async () => {
    fake.enqueue({
      kind: "deltas",
      deltas: [
        opening(first(0, "call_0", "get_weather")),
        { tool_calls: [args(1, '{"city":')] },
        { tool_calls: [{ index: 1, function: { name: "get_time", arguments: '"Kyiv"}' } }] },
      ],
      finishReason: "tool_calls",
    });

    const chunks = await collect();

    expect(ofType(chunks, "tool_call_delta").filter((d) => d.index === 1)).toEqual([
      { type: "tool_call_delta", index: 1, argumentsDelta: '{"city":' },
      { type: "tool_call_delta", index: 1, name: "get_time", argumentsDelta: '"Kyiv"}' },
    ]);
    const second = ofType(chunks, "tool_call")[1]!;
    expect(second.call).toMatchObject({ name: "get_time", arguments: '{"city":"Kyiv"}' });
    expect(second.call.id).toMatch(/^call_\w+$/);
    expect(second.call.id).not.toBe("call_0");
  });

  it("a call that never gets a name is an UNAVAILABLE ProviderError naming its index, and no complete call is yielded", async () => {
    fake.enqueue({
      kind: "deltas",
      deltas: [opening(first(0, "call_0", "get_weather")), { tool_calls: [{ index: 1, id: "call_1", function: { arguments: "{}" } }] }],
      finishReason: "tool_calls",
    });
    const seen: ProviderChunk[] = [];

    const err = await (async () => {
      for await (const chunk of provider.stream(request, new AbortController().signal)) seen.push(chunk);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(Object.getPrototypeOf(err)).toBe(ProviderError.prototype);
    expect((err as ProviderError).code).toBe(Code.Unavailable);
    expect((err as ProviderError).rawMessage).toBe("openai provider: upstream sent a tool call with no function name (tool call index 1)");
    expect(ofType(seen, "tool_call")).toEqual([]);
  });

  it("a text-only answer yields no tool chunks", async () => {
    fake.enqueue({ kind: "stream", chunks: ["just ", "text"] });

    expect((await collect()).map((c) => c.type)).toEqual(["delta", "delta", "finish"]);
  });
});

describe("openai provider: non-streamed tool calls", () => {
  const calls = [
    { id: "call_1", name: "get_weather", arguments: '{"city":"Oslo"}' },
    { id: "call_2", name: "get_time", arguments: '{"zone":"CET"}' },
  ];

  it("generate maps message.tool_calls into toolCalls, in order", async () => {
    fake.enqueue({ kind: "json", content: "", toolCalls: calls, finishReason: "tool_calls" });

    const result = await provider.generate!(request, new AbortController().signal);

    expect(result).toMatchObject({ text: "", toolCalls: calls, finishReason: "tool_calls" });
  });

  it("generate without tool calls has no toolCalls", async () => {
    fake.enqueue({ kind: "json", content: "plain" });

    expect(await provider.generate!(request, new AbortController().signal)).not.toHaveProperty("toolCalls");
  });
});

describe("openai provider: what it sends", () => {
  it("says it speaks tools and structured output", () => {
    expect(provider.capabilities).toEqual({ tools: true, structuredOutput: true });
  });

  it("tools, tool choice, parallel calls, response format and tool-use history go in OpenAI's shape", async () => {
    const schema = { type: "object", properties: { answer: { type: "string" } }, required: ["answer"] };
    await collect({
      model: "gpt-test",
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: "weather in Oslo and Rome?" },
        {
          role: "assistant",
          content: "",
          toolCalls: [
            { id: "call_1", name: "get_weather", arguments: '{"city":"Oslo"}' },
            { id: "call_2", name: "get_weather", arguments: '{"city":"Rome"}' },
          ],
        },
        { role: "tool", toolCallId: "call_1", content: "rain" },
        { role: "tool", toolCallId: "call_2", content: "sun" },
        { role: "assistant", content: "Checking once more.", toolCalls: [{ id: "call_3", name: "get_weather", arguments: "{}" }] },
        { role: "tool", toolCallId: "call_3", content: "still sun" },
      ],
      tools: [weather],
      toolChoice: { name: "get_weather" },
      parallelToolCalls: false,
      responseFormat: { name: "answer", schema },
    });

    const body = fake.requests[0]!.body;
    expect(body.tools).toEqual([{ type: "function", function: weather }]);
    expect(body.tool_choice).toEqual({ type: "function", function: { name: "get_weather" } });
    expect(body.parallel_tool_calls).toBe(false);
    expect(body.response_format).toEqual({ type: "json_schema", json_schema: { name: "answer", schema, strict: false } });
    expect(body.messages).toEqual([
      { role: "system", content: "be brief" },
      { role: "user", content: "weather in Oslo and Rome?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } },
          { id: "call_2", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "rain" },
      { role: "tool", tool_call_id: "call_2", content: "sun" },
      {
        role: "assistant",
        content: "Checking once more.",
        tool_calls: [{ id: "call_3", type: "function", function: { name: "get_weather", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "call_3", content: "still sun" },
    ]);
  });

  it.each(["auto", "none", "required"] as const)("tool choice %j is sent as the string", async (toolChoice) => {
    await collect({ ...request, toolChoice });

    expect(fake.requests[0]!.body.tool_choice).toBe(toolChoice);
  });

  it("without tools, tool choice and parallel calls are not sent (OpenAI refuses them alone); a response format still is", async () => {
    await collect({
      model: "gpt-test",
      messages: request.messages,
      tools: [],
      toolChoice: "auto",
      parallelToolCalls: true,
      responseFormat: { name: "r", schema: {} },
    });

    const body = fake.requests[0]!.body;
    expect(body).not.toHaveProperty("tools");
    expect(body).not.toHaveProperty("tool_choice");
    expect(body).not.toHaveProperty("parallel_tool_calls");
    expect(body.response_format).toEqual({ type: "json_schema", json_schema: { name: "r", schema: {}, strict: false } });
  });

  it("a plain request sends no tool fields and the messages as they are", async () => {
    await collect({ model: "gpt-test", messages: [{ role: "user", content: "hi" }] });

    const body = fake.requests[0]!.body;
    expect(body.messages).toEqual([{ role: "user", content: "hi" }]);
    for (const key of ["tools", "tool_choice", "parallel_tool_calls", "response_format"]) expect(body).not.toHaveProperty(key);
  });

  it("an agent's extra cannot smuggle tools, tool choice, functions or a response format past the request's own", async () => {
    const smuggled = {
      top_p: 0.3,
      tools: [{ type: "function", function: { name: "rm_rf", parameters: {} } }],
      tool_choice: "required",
      parallel_tool_calls: true,
      response_format: { type: "json_object" },
      functions: [{ name: "rm_rf", parameters: {} }],
      function_call: { name: "rm_rf" },
    };

    await collect({ ...request, toolChoice: "auto", extra: smuggled });
    await collect({ model: "gpt-test", messages: request.messages, extra: smuggled });

    const [withTools, without] = fake.requests.map((r) => r.body);
    expect(withTools.top_p).toBe(0.3);
    expect(withTools.tools).toEqual([{ type: "function", function: weather }]);
    expect(withTools.tool_choice).toBe("auto");
    expect(without.top_p).toBe(0.3);
    for (const body of [withTools, without]) {
      for (const key of ["parallel_tool_calls", "response_format", "functions", "function_call"]) expect(body).not.toHaveProperty(key);
    }
    for (const key of ["tools", "tool_choice"]) expect(without).not.toHaveProperty(key);
  });
});
