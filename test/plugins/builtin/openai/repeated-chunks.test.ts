import { describe, expect, it } from "vitest";
import { RepeatedChunks } from "../../../../src/plugins/builtin/openai/repeated-chunks.ts";
import { StreamedAnswer } from "../../../../src/plugins/builtin/openai/streamed-answer.ts";

const chunk = (content: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1,
    model: "m",
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
    ...extra,
  });

function learned(data = chunk("Hello")): RepeatedChunks {
  const r = new RepeatedChunks();
  r.learn(data, JSON.parse(data));
  return r;
}

describe("RepeatedChunks", () => {
  it("reads the text of a chunk that repeats a learned one but for its text", () => {
    const r = learned();
    expect(r.text(chunk(" world"))).toBe(" world");
    expect(r.text(chunk(""))).toBe("");
  });

  it("decodes escapes, quotes, non-ASCII and control characters as JSON.parse does", () => {
    const r = learned();
    for (const text of ['say "hi"', "back\\slash", "tab\there\nline", "\u0001", "中文 🙂", "\\u0041 literal", "}]}"]) expect(r.text(chunk(text))).toBe(text);
  });

  it("knows nothing before it learns, and reads nothing but its own shape", () => {
    expect(new RepeatedChunks().text(chunk("x"))).toBeUndefined();
    const r = learned();
    expect(r.text(chunk("x", { model: "other" }))).toBeUndefined();
    expect(r.text(chunk("x").replace("null}]", '"stop"}]'))).toBeUndefined();
    expect(r.text("[DONE]")).toBeUndefined();
  });

  it("refuses a body that is not one valid JSON string, so the chunk is parsed whole", () => {
    const r = learned();
    const before = chunk("").slice(0, chunk("").indexOf('"content":""') + '"content":"'.length);
    const after = chunk("").slice(before.length);
    // A text that closes the literal early and adds a key: the whole chunk is still JSON, but not this shape's.
    expect(r.text(`${before}a","role":"x${after}`)).toBeUndefined();
    expect(r.text(`${before}ends in a backslash\\${after}`)).toBeUndefined();
    expect(r.text(`${before}bad \\q escape${after}`)).toBeUndefined();
    expect(r.text(`${before}raw \n newline${after}`)).toBeUndefined();
  });

  it("does not learn a chunk that carries anything else to read", () => {
    const cases = [
      chunk("x", { usage: { prompt_tokens: 1, completion_tokens: 1 } }),
      JSON.stringify({ choices: [{ delta: { content: "x", role: "assistant" } }] }),
      JSON.stringify({ choices: [{ delta: { content: "x" }, finish_reason: "stop" }] }),
      JSON.stringify({ choices: [{ delta: { content: "x" } }, { delta: { content: "y" } }] }),
      JSON.stringify({ choices: [{ delta: { content: null } }] }),
      // The key twice: which one is the delta's cannot be told from the text.
      JSON.stringify({ choices: [{ delta: { content: "x" } }], extra: { content: "x" } }),
      // Spaces around the colon: not the compact key it looks for.
      '{"choices": [{"delta": {"content": "x"}}]}',
    ];
    for (const data of cases) {
      const r = new RepeatedChunks();
      r.learn(data, JSON.parse(data));
      expect(r.text(data), data).toBeUndefined();
    }
  });

  it("stops learning after three shapes, so chunks that all differ cost one parse each", () => {
    const r = new RepeatedChunks();
    for (let i = 0; i < 5; i++) r.learn(chunk("a", { id: `c${i}` }), JSON.parse(chunk("a", { id: `c${i}` })));
    expect(r.text(chunk("b", { id: "c2" }))).toBe("b");
    expect(r.text(chunk("b", { id: "c3" }))).toBeUndefined();
  });
});

describe("StreamedAnswer with repeated chunks", () => {
  const sse = (...datas: string[]) => datas.map((d) => `data: ${d}\n\n`).join("");

  it("gives the same text, finish, usage and model as parsing every chunk, and the mid-stream error an error event reports", () => {
    const texts = ["Hi", " there", ' "quoted"', " \\ slash", " 中文", "", " end"];
    const answer = new StreamedAnswer();
    const events = answer.events(
      sse(
        JSON.stringify({ id: "c", model: "m", choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] }),
        ...texts.map((t) => chunk(t)),
        chunk(" changed model", { model: "m2" }),
        JSON.stringify({ id: "c", model: "m2", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }),
        JSON.stringify({ id: "c", model: "m2", choices: [], usage: { prompt_tokens: 3, completion_tokens: 8 } }),
        "[DONE]",
      ),
    );
    const got = events.flatMap((e) => answer.take(e)).map((c) => (c.type === "delta" ? c.text : c.type));
    expect(got).toEqual(texts.filter(Boolean).concat(" changed model"));
    expect(answer.complete("http://u", true)).toEqual([{ type: "finish", finishReason: "stop", usage: { inputTokens: 3, outputTokens: 8 }, model: "m2" }]);

    const failing = new StreamedAnswer();
    const [first, bad] = failing.events(`data: ${chunk("a")}\n\nevent: error\ndata: ${chunk("b")}\n\n`);
    expect(failing.take(first!)).toEqual([{ type: "delta", text: "a" }]);
    expect(() => failing.take(bad!)).toThrow(/error mid-stream/);
  });
});
