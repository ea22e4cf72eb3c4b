import { Code, ConnectError, type JsonObject } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { checkCheckpointData } from "../../src/services/checkpoint-data.ts";

function refusal(data: JsonObject): ConnectError {
  try {
    checkCheckpointData(data);
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error(`${JSON.stringify(data)} was accepted`);
}

describe("checkpoint data at the service edge", () => {
  it("takes any JSON value, extremes of Unicode and numbers included", () => {
    const data = { "": [null, true, -0, 1e308, 5e-324, -(2 ** 63)], emoji: "\u{1F600}", rtl: "\u202E", max: "\uFFFF", "\u{1F600}": { a: [[{}]] } };
    expect(() => checkCheckpointData(data)).not.toThrow();
  });

  it("refuses NaN and infinities anywhere, as INVALID_ARGUMENT naming data", () => {
    for (const data of [{ n: NaN }, { a: [1, [Infinity]] }, { deep: { deeper: { x: -Infinity } } }] as JsonObject[]) {
      const err = refusal(data);
      expect([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, expect.stringMatching(/^data: holds the number (NaN|-?Infinity)/)]);
    }
  });

  it("refuses a lone surrogate in a string or a key, quoting it escaped", () => {
    for (const data of [{ s: "\uD800" }, { a: ["ok", "x\uDC00y"] }, { "k\uDBFF": 1 }, { o: { "\uDFFF": "v" } }] as JsonObject[]) {
      const err = refusal(data);
      expect([err.code, err.rawMessage.startsWith("data: ")]).toEqual([Code.InvalidArgument, true]);
      expect(err.rawMessage).toMatch(/\\ud[89a-f][0-9a-f]{2}/);
    }
  });

  it("walks nesting deeper than the call stack without recursion", () => {
    let data: JsonObject = { leaf: Infinity };
    for (let i = 0; i < 100_000; i++) data = { d: data };
    expect(refusal(data).code).toBe(Code.InvalidArgument);
  });
});
