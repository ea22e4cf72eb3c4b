import { describe, expect, it } from "vitest";
import { MAX_SSE_LINE_CHARS, SseParser, type SseEvent } from "../../../../src/plugins/builtin/openai/sse.ts";

/** Feeds the pieces in order, as reads from a socket, and returns every event with the end's. */
function parse(pieces: string[]): SseEvent[] {
  const parser = new SseParser();
  return [...pieces.flatMap((p) => parser.push(p)), ...parser.end()];
}

/** The body cut into pieces of `size` characters, wherever that falls (inside CRLF, between an event's lines). */
function cut(body: string, size: number): string[] {
  const chars = Array.from(body);
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(""));
  return out;
}

const stream = [
  ": a comment the upstream sends to keep the connection open",
  'data: {"choices":[{"delta":{"content":"héllo ✓"}}]}',
  "",
  "event: error",
  'data: {"message":"first line"}',
  "data: second line",
  "id: 7",
  "retry: 1000",
  "",
  "data",
  "",
  "data: [DONE]",
  "",
  "",
].join("\n");

const expected: SseEvent[] = [
  { event: null, data: '{"choices":[{"delta":{"content":"héllo ✓"}}]}' },
  { event: "error", data: '{"message":"first line"}\nsecond line' },
  { event: null, data: "" },
  { event: null, data: "[DONE]" },
];

describe("SseParser", () => {
  it("reads events, names, multi-line data and comments, however the body is split", () => {
    expect(parse([stream])).toEqual(expected);
    for (const size of [1, 2, 3, 5, 7, 64]) expect(parse(cut(stream, size)), `pieces of ${size} characters`).toEqual(expected);
  });

  it("takes CRLF and lone CR as line ends, including a CRLF split between two reads", () => {
    for (const eol of ["\r\n", "\r"]) {
      const body = stream.split("\n").join(eol);
      for (const size of [1, 3, 64, body.length]) expect(parse(cut(body, size)), `${JSON.stringify(eol)}, pieces of ${size}`).toEqual(expected);
    }
    // A CR as the very last byte still ends its line.
    expect(parse(["data: x\r\r"])).toEqual([{ event: null, data: "x" }]);
  });

  it("drops an event the body ends before its blank line", () => {
    expect(parse(["data: whole\n\ndata: cut sho"])).toEqual([{ event: null, data: "whole" }]);
    expect(parse(["data: whole\n\ndata: no blank line\n"])).toEqual([{ event: null, data: "whole" }]);
  });

  it("refuses a line that never ends, and an event whose data grows past the limit", () => {
    const parser = new SseParser();
    expect(() => {
      for (let i = 0; i <= MAX_SSE_LINE_CHARS / (1 << 20); i++) parser.push(`data: ${"x".repeat(1 << 20)}`);
    }).toThrow(/a line passed/);
    const many = new SseParser();
    expect(() => {
      for (let i = 0; i <= MAX_SSE_LINE_CHARS / (1 << 20); i++) many.push(`data: ${"y".repeat(1 << 20)}\n`);
    }).toThrow(/an event's data passed/);
  });
});
