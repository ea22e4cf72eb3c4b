import { Code, ConnectError } from "@qingyu/plugin-api";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExecuteBatchRequestSchema, ExecuteRequestSchema, ListAgentsRequestSchema } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SaveCheckpointRequestSchema } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { checkJsonMaps } from "../../src/transport/json-map-scan.ts";
import { checkBinaryMaps, mapPlan } from "../../src/transport/wire-limits.ts";

const limits = { maxMapEntries: 10, maxMapBytes: 1000 };

function entries(n: number, valueLength = 1): Record<string, string> {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v".repeat(valueLength)]));
}

function refusal(fn: () => void): ConnectError {
  try {
    fn();
  } catch (err) {
    return err as ConnectError;
  }
  throw new Error("not refused");
}

const json = (s: string) => new TextEncoder().encode(s);

describe("checkBinaryMaps", () => {
  it("lets a map at the bound through and refuses one entry more, naming the field and the option", () => {
    const ok = toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "a", task: "t", metadata: entries(10) }));
    expect(() => checkBinaryMaps(ExecuteRequestSchema, ok, limits)).not.toThrow();
    const over = toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "a", metadata: entries(11) }));
    const err = refusal(() => checkBinaryMaps(ExecuteRequestSchema, over, limits));
    expect(err).toBeInstanceOf(ConnectError);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^metadata: has more than 10 entries.*server\.limits\.maxMapEntries/);
  });

  it("refuses a map over the byte bound", () => {
    const over = toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { metadata: entries(2, 600) }));
    const err = refusal(() => checkBinaryMaps(ExecuteRequestSchema, over, limits));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^metadata: has more than 1000 bytes.*maxMapBytes/);
  });

  it("counts each batch item's map on its own and names the item", () => {
    const items = [create(ExecuteRequestSchema, { metadata: entries(10) }), create(ExecuteRequestSchema, { metadata: entries(10) })];
    const ok = toBinary(ExecuteBatchRequestSchema, create(ExecuteBatchRequestSchema, { requests: items }));
    expect(() => checkBinaryMaps(ExecuteBatchRequestSchema, ok, limits)).not.toThrow();
    items.push(create(ExecuteRequestSchema, { metadata: entries(11) }));
    const over = toBinary(ExecuteBatchRequestSchema, create(ExecuteBatchRequestSchema, { requests: items }));
    expect(refusal(() => checkBinaryMaps(ExecuteBatchRequestSchema, over, limits)).rawMessage).toMatch(/^requests\[2\]\.metadata: /);
  });

  it("adds up a map field sent in pieces, as the decoder merges them", () => {
    const half = toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { metadata: entries(6) }));
    const joined = new Uint8Array([...half, ...toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { task: "x" })), ...half]);
    expect(refusal(() => checkBinaryMaps(ExecuteRequestSchema, joined, limits)).code).toBe(Code.InvalidArgument);
  });

  it("leaves bytes that do not parse to the decoder", () => {
    expect(() => checkBinaryMaps(ExecuteRequestSchema, new Uint8Array([0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f]), limits)).not.toThrow();
    expect(() => checkBinaryMaps(ExecuteRequestSchema, new Uint8Array([0xff]), limits)).not.toThrow();
  });

  it("skips unknown fields of every wire type, groups included", () => {
    const unknown = [0x78, 0x01, 0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x85, 0x01, 1, 2, 3, 4, 0x8b, 0x01, 0x08, 0x01, 0x8c, 0x01];
    const body = new Uint8Array([...unknown, ...toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { metadata: entries(11) }))]);
    expect(refusal(() => checkBinaryMaps(ExecuteRequestSchema, body, limits)).code).toBe(Code.InvalidArgument);
  });

  it("does not count checkpoint data (a Struct: a document, bounded by maxCheckpointBytes)", () => {
    const data = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, i]));
    const body = toBinary(SaveCheckpointRequestSchema, create(SaveCheckpointRequestSchema, { sessionId: "s", data }));
    expect(() => checkBinaryMaps(SaveCheckpointRequestSchema, body, limits)).not.toThrow();
    expect(mapPlan(SaveCheckpointRequestSchema)).toBeUndefined();
  });

  it("has nothing to scan in a request without maps", () => {
    expect(mapPlan(ListAgentsRequestSchema)).toBeUndefined();
  });
});

describe("checkJsonMaps", () => {
  it("refuses a JSON map over the entry bound, by JSON or proto field name", () => {
    const ok = json(toJsonString(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "a", metadata: entries(10) })));
    expect(() => checkJsonMaps(ExecuteRequestSchema, ok, limits)).not.toThrow();
    const over = JSON.stringify({ agentId: "a", metadata: entries(11), task: "t" });
    expect(refusal(() => checkJsonMaps(ExecuteRequestSchema, json(over), limits)).rawMessage).toMatch(/^metadata: has more than 10 entries/);
    const batch = JSON.stringify({ requests: [{ metadata: {} }, null, { user_id: "u", metadata: entries(11) }] });
    expect(refusal(() => checkJsonMaps(ExecuteBatchRequestSchema, json(batch), limits)).rawMessage).toMatch(/^requests\[2\]\.metadata: /);
  });

  it("refuses a JSON map over the byte bound", () => {
    const over = JSON.stringify({ metadata: entries(2, 600) });
    expect(refusal(() => checkJsonMaps(ExecuteRequestSchema, json(over), limits)).rawMessage).toMatch(/maxMapBytes/);
  });

  it("sees a field name spelled with escapes, as JSON.parse does", () => {
    const over = `{"\\u006detadata": ${JSON.stringify(entries(11))}}`;
    expect(refusal(() => checkJsonMaps(ExecuteRequestSchema, json(over), limits)).code).toBe(Code.InvalidArgument);
  });

  it("skips other values of any shape, and strings holding braces and quotes", () => {
    const body = `{ "task": "} { \\" ]", "options": {"model": "m", "extra": [[[{}]]]}, "x": [1, -2.5e3, true, null],\n "metadata": ${JSON.stringify(entries(11))} }`;
    expect(refusal(() => checkJsonMaps(ExecuteRequestSchema, json(body), limits)).code).toBe(Code.InvalidArgument);
    expect(() => checkJsonMaps(ExecuteRequestSchema, json(`{"task": "t", "metadata": null}`), limits)).not.toThrow();
  });

  it("leaves text that is not JSON to the parser", () => {
    for (const bad of [`{"metadata": {"a": }`, `[`, ``, `{"metadata": {"a": "b"`, `"x"`]) {
      expect(() => checkJsonMaps(ExecuteRequestSchema, json(bad), limits)).not.toThrow();
    }
  });

  it("walks a deeply nested value without overflowing the stack", () => {
    const deep = `{"task": ${"[".repeat(200_000)}${"]".repeat(200_000)}, "metadata": ${JSON.stringify(entries(11))}}`;
    expect(refusal(() => checkJsonMaps(ExecuteRequestSchema, json(deep), limits)).code).toBe(Code.InvalidArgument);
  });
});
