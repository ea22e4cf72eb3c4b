import { Code, ConnectError } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodePageToken, encodePageToken, MAX_CURSOR_TIME } from "../../src/sessions/page-token.ts";

const b64 = (text: string) => Buffer.from(text).toString("base64url");

function refusal(token: string): ConnectError {
  try {
    decodePageToken(token);
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error(`token ${token} was accepted`);
}

describe("page tokens", () => {
  const id = randomUUID();

  it("reads back every cursor a store writes: a time or version, and a lower-case UUID", () => {
    for (const time of [0, 1, Date.now(), 2 ** 31, MAX_CURSOR_TIME]) {
      expect(decodePageToken(encodePageToken({ time, id }))).toEqual({ time, id });
    }
    expect(decodePageToken("")).toBeUndefined();
  });

  it("refuses a well-formed token holding what no store wrote, as INVALID_ARGUMENT naming page_token", () => {
    const forged: Record<string, string> = {
      "time 1e300 (no Date)": JSON.stringify([1e300, id]),
      "time 1e999 (Infinity)": `[1e999,"${id}"]`,
      "time past the last Date": JSON.stringify([8.64e15 + 1, id]),
      "time in year 10000 (PostgreSQL reads no five-digit year)": JSON.stringify([MAX_CURSOR_TIME + 1, id]),
      "time 2^63-1": `[9223372036854775807,"${id}"]`,
      "time negative": JSON.stringify([-1, id]),
      "time a fraction": JSON.stringify([1.5, id]),
      "time a string": JSON.stringify(["0", id]),
      "time null": JSON.stringify([null, id]),
      "id not a UUID": JSON.stringify([0, "not-a-uuid"]),
      "id upper-case": JSON.stringify([0, id.toUpperCase()]),
      "id a number": JSON.stringify([0, 5]),
      "id with NUL": JSON.stringify([0, `${id}\u0000`]),
      "three elements": JSON.stringify([0, id, "x"]),
      "one element": JSON.stringify([0]),
      "an object": JSON.stringify({ time: 0, id }),
      null: "null",
      "spaced JSON": `[0, "${id}"]`,
      "time as 1e3": `[1e3,"${id}"]`,
    };
    for (const [what, json] of Object.entries(forged)) {
      const err = refusal(b64(json));
      expect([what, err.code, err.rawMessage]).toEqual([what, Code.InvalidArgument, "page_token: is not a token this server issued"]);
    }
  });

  it("refuses tokens that are not base64url JSON, and altered real ones", () => {
    const real = encodePageToken({ time: 1_700_000_000_000, id });
    for (const token of ["!!!!", "%00", b64("[0,"), `${real}A`, real.slice(0, -1), `${real}=`, ` ${real}`]) {
      expect(refusal(token).code).toBe(Code.InvalidArgument);
    }
  });
});
