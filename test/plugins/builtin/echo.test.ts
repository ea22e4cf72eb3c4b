// The echo provider: the plain echo, and the script syntax that makes it call tools
// (documented at the top of src/plugins/builtin/echo.ts), driven by a small tool loop.
import { Code, ConnectError, type ChatMessage, type LlmProvider, type ProviderChunk, type ProviderRequest, type ToolCall } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import echo from "../../../src/plugins/builtin/echo.ts";
import { setUpPlugin } from "../../support/plugin-context.ts";

const provider = await setUpPlugin(echo, {});

async function collect(messages: ChatMessage[], extra: Partial<ProviderRequest> = {}, p: LlmProvider = provider): Promise<ProviderChunk[]> {
  const out: ProviderChunk[] = [];
  for await (const chunk of p.stream({ model: "echo-1", messages, ...extra }, new AbortController().signal)) out.push(chunk);
  return out;
}

const ofType = <T extends ProviderChunk["type"]>(chunks: ProviderChunk[], type: T) =>
  chunks.filter((c): c is Extract<ProviderChunk, { type: T }> => c.type === type);
const textOf = (chunks: ProviderChunk[]) =>
  ofType(chunks, "delta")
    .map((d) => d.text)
    .join("");
const callsOf = (chunks: ProviderChunk[]) => ofType(chunks, "tool_call").map((c) => c.call);
const finishOf = (chunks: ProviderChunk[]) => chunks.at(-1) as Extract<ProviderChunk, { type: "finish" }>;

/** One model step and, when it called tools, the messages a runtime appends: the assistant's calls and each tool's answer. */
async function step(messages: ChatMessage[], tools: Record<string, (args: string) => string> = {}): Promise<ProviderChunk[]> {
  const chunks = await collect(messages);
  const calls = callsOf(chunks);
  messages.push({ role: "assistant", content: textOf(chunks), ...(calls.length ? { toolCalls: calls } : {}) });
  for (const call of calls) messages.push({ role: "tool", toolCallId: call.id, content: (tools[call.name] ?? (() => "ok"))(call.arguments) });
  return chunks;
}

describe("echo: plain", () => {
  it("echoes the task word by word with the history count, and says it speaks tools", async () => {
    const chunks = await collect([
      { role: "system", content: "be kind" },
      { role: "user", content: "first" },
      { role: "assistant", content: "reply" },
      { role: "user", content: "hello  there " },
    ]);

    expect(ofType(chunks, "delta").map((d) => d.text)).toEqual(["[history=2] ", "hello ", " ", "there "]);
    expect(finishOf(chunks)).toEqual({ type: "finish", finishReason: "stop", usage: { inputTokens: 6, outputTokens: 4 }, model: "echo-1" });
    expect(provider.capabilities).toEqual({ tools: true });
  });

  it("maxTokens cuts the answer and finishes with length", async () => {
    const chunks = await collect([{ role: "user", content: "one two three four" }], { maxTokens: 2 });

    expect(textOf(chunks)).toBe("[history=0] one ");
    expect(finishOf(chunks).finishReason).toBe("length");
  });
});

describe("echo: scripts", () => {
  it("a two-step script: one call per step, ids call_<u>_<s>_<i>, then the echo with each tool's result", async () => {
    const messages: ChatMessage[] = [
      { role: "system", content: "agent" },
      { role: "user", content: 'book a trip\n!call find_flight {"to":"Oslo"}\n!step\n!call book {"flight":"F1"}' },
    ];
    const tools = { find_flight: () => "F1", book: (args: string) => `booked ${JSON.parse(args).flight}` };

    const first = await step(messages, tools);
    const second = await step(messages, tools);
    const last = await step(messages, tools);

    expect(first).toEqual([
      { type: "tool_call_delta", index: 0, id: "call_1_1_1", name: "find_flight", argumentsDelta: '{"to":' },
      { type: "tool_call_delta", index: 0, argumentsDelta: '"Oslo"}' },
      { type: "tool_call", index: 0, call: { id: "call_1_1_1", name: "find_flight", arguments: '{"to":"Oslo"}' } },
      { type: "finish", finishReason: "tool_calls", usage: { inputTokens: 11, outputTokens: 1 }, model: "echo-1" },
    ]);
    expect(callsOf(second)).toEqual([{ id: "call_1_2_1", name: "book", arguments: '{"flight":"F1"}' }]);
    expect(finishOf(second).finishReason).toBe("tool_calls");
    expect(callsOf(last)).toEqual([]);
    expect(textOf(last)).toBe("[history=0] book a trip\n[find_flight] F1\n[book] booked F1");
    expect(finishOf(last).finishReason).toBe("stop");
  });

  it("consecutive !call lines are parallel calls: all deltas, then the complete calls in order", async () => {
    const chunks = await collect([{ role: "user", content: '!call a {"n":1}\n!call b {"n":22}\n!call c' }]);

    expect(chunks.map((c) => c.type)).toEqual([...Array(6).fill("tool_call_delta"), "tool_call", "tool_call", "tool_call", "finish"]);
    expect(callsOf(chunks)).toEqual([
      { id: "call_1_1_1", name: "a", arguments: '{"n":1}' },
      { id: "call_1_1_2", name: "b", arguments: '{"n":22}' },
      // No arguments written: the empty object.
      { id: "call_1_1_3", name: "c", arguments: "{}" },
    ]);
    const deltas = ofType(chunks, "tool_call_delta");
    expect(deltas.map((d) => [d.index, d.id, d.name])).toEqual([
      [0, "call_1_1_1", "a"],
      [0, undefined, undefined],
      [1, "call_1_1_2", "b"],
      [1, undefined, undefined],
      [2, "call_1_1_3", "c"],
      [2, undefined, undefined],
    ]);
    for (const [i, call] of callsOf(chunks).entries()) {
      expect(deltas.filter((d) => d.index === i).map((d) => d.argumentsDelta)).toEqual([
        call.arguments.slice(0, call.arguments.length >> 1),
        call.arguments.slice(call.arguments.length >> 1),
      ]);
    }
    expect(finishOf(chunks).usage?.outputTokens).toBe(3);
  });

  it("!say is streamed before the step's calls", async () => {
    const chunks = await collect([{ role: "user", content: "!say Let me check that.\n!call lookup {}" }]);

    expect(chunks.map((c) => (c.type === "delta" ? c.text : c.type))).toEqual([
      "Let ",
      "me ",
      "check ",
      "that.",
      "tool_call_delta",
      "tool_call_delta",
      "tool_call",
      "finish",
    ]);
    expect(finishOf(chunks).usage?.outputTokens).toBe(5);
  });

  it("!loop calls its tool in every step, forever, after the step's own calls", async () => {
    const messages: ChatMessage[] = [{ role: "user", content: "!call setup {}\n!loop ping {}" }];
    const seen: ToolCall[][] = [];
    for (let i = 0; i < 6; i++) seen.push(callsOf(await step(messages)));

    expect(seen[0]).toEqual([
      { id: "call_1_1_1", name: "setup", arguments: "{}" },
      { id: "call_1_1_2", name: "ping", arguments: "{}" },
    ]);
    expect(seen.slice(1)).toEqual([2, 3, 4, 5, 6].map((s) => [{ id: `call_1_${s}_1`, name: "ping", arguments: "{}" }]));
  });

  it("!answer lines are the final answers in turn (a repair step gets the second), then the echo", async () => {
    const messages: ChatMessage[] = [{ role: "user", content: 'sum it\n!call add {"a":1}\n!answer {"total": "one"}\n!answer {"total": 1}' }];

    expect(callsOf(await step(messages))).toHaveLength(1);
    const first = await step(messages);
    messages.push({ role: "user", content: "That does not match the schema; answer again." });
    const repaired = await step(messages);
    messages.push({ role: "user", content: "thanks" });
    const after = await step(messages);

    expect(textOf(first)).toBe('{"total": "one"}');
    expect(ofType(first, "delta").length).toBe(2);
    expect(textOf(repaired)).toBe('{"total": 1}');
    expect(textOf(after)).toBe("[history=6] thanks");
    expect([first, repaired, after].map((c) => finishOf(c).finishReason)).toEqual(["stop", "stop", "stop"]);
  });

  it("a second plain turn after a scripted turn is a plain echo", async () => {
    const messages: ChatMessage[] = [{ role: "user", content: "weather\n!call get_weather {}" }];
    await step(messages, { get_weather: () => "sunny" });
    const scriptedEnd = await step(messages);
    messages.push({ role: "user", content: "and tomorrow?" });
    const plain = await step(messages);

    expect(textOf(scriptedEnd)).toBe("[history=0] weather\n[get_weather] sunny");
    expect(ofType(plain, "tool_call")).toEqual([]);
    expect(textOf(plain)).toBe("[history=4] and tomorrow?");
  });

  it("a new plain user message does not resume step mode, even mid-script or under !loop", async () => {
    for (const script of ["!call one {}\n!step\n!call two {}", "!loop ping {}"]) {
      const messages: ChatMessage[] = [{ role: "user", content: `go\n${script}` }];
      // A run that stopped after its first step (a step limit), then the next turn.
      await collect(messages).then((chunks) => {
        messages.push({ role: "assistant", content: "", toolCalls: callsOf(chunks) });
        for (const call of callsOf(chunks)) messages.push({ role: "tool", toolCallId: call.id, content: "done" });
      });
      messages.push({ role: "user", content: "something else" });

      const chunks = await collect(messages);

      expect(ofType(chunks, "tool_call")).toEqual([]);
      expect(textOf(chunks)).toBe("[history=3] something else");
    }
  });

  it("script lines are removed from the echo, which is trimmed; arguments are passed as written, JSON or not", async () => {
    const messages: ChatMessage[] = [{ role: "user", content: "  keep this  \n!call broken {oops\n!unknown thing\n  !not script\n" }];

    const chunks = await step(messages);
    const final = await step(messages);

    expect(callsOf(chunks)).toEqual([{ id: "call_1_1_1", name: "broken", arguments: "{oops" }]);
    // "!unknown" is a script line that means nothing; "  !not script" does not start with "!".
    expect(textOf(final)).toBe("[history=0] keep this  \n  !not script\n[broken] ok");
  });

  it("tool call arguments are cut in two without splitting a surrogate pair", async () => {
    const chunks = await collect([{ role: "user", content: '!call say {"a":"😀"    }' }]);

    expect(ofType(chunks, "tool_call_delta").map((d) => d.argumentsDelta)).toEqual(['{"a":"😀', '"    }']);
  });

  it("maxTokens counts calls too: a cut step has fewer calls and finishes with length", async () => {
    const chunks = await collect([{ role: "user", content: "!say two words\n!call a {}\n!call b {}" }], { maxTokens: 3 });

    expect(textOf(chunks)).toBe("two words");
    expect(callsOf(chunks).map((c) => c.name)).toEqual(["a"]);
    expect(finishOf(chunks)).toMatchObject({ finishReason: "length", usage: { outputTokens: 3 } });
  });

  it("an abort during the token delay before a call ends the stream with the cancel", async () => {
    const slow = await setUpPlugin(echo, { tokenDelayMs: 60_000 });
    const controller = new AbortController();
    const reason = new ConnectError("client went away", Code.Canceled);
    const seen: ProviderChunk[] = [];

    const run = (async () => {
      for await (const chunk of slow.stream({ model: "echo-1", messages: [{ role: "user", content: "!call a {}" }] }, controller.signal)) seen.push(chunk);
    })();
    setTimeout(() => controller.abort(reason), 20);

    await expect(run).rejects.toBe(reason);
    expect(seen).toEqual([]);
  });
});
