import { describe, expect, it } from "vitest";
import { resultText } from "../../../src/tools/mcp/result.ts";

describe("resultText", () => {
  it("joins text parts as they are", () => {
    expect(
      resultText({
        content: [
          { type: "text", text: "one" },
          { type: "text", text: "two" },
        ],
      }),
    ).toBe("one\ntwo");
  });

  it("gives other parts as a short JSON note, their payloads as sizes", () => {
    const text = resultText({
      content: [
        { type: "image", data: "A".repeat(4000), mimeType: "image/png" },
        { type: "resource", resource: { uri: "file:///r.txt", mimeType: "text/plain", text: "long body" } },
        { type: "resource_link", uri: "file:///x", name: "x" },
      ],
    });
    expect(text.split("\n").map((line) => JSON.parse(line) as unknown)).toEqual([
      { type: "image", dataLength: 4000, mimeType: "image/png" },
      { type: "resource", resource: { uri: "file:///r.txt", mimeType: "text/plain", textLength: 9 } },
      { type: "resource_link", uri: "file:///x", name: "x" },
    ]);
  });

  it("prefers structured content, as JSON", () => {
    expect(resultText({ content: [{ type: "text", text: "3" }], structuredContent: { sum: 3 } })).toBe('{"sum":3}');
  });
});
