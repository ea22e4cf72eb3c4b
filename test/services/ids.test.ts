import { Code, ConnectError } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { ids, MAX_NAME_BYTES, MAX_VERSION } from "../../src/services/ids.ts";

function refusal(fn: () => unknown): ConnectError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("ids at the service edge", () => {
  it("takes a session or checkpoint UUID in any case and returns it in lower case", () => {
    const id = "0F8FAD5B-D9CB-469F-A165-70867728950E";
    expect(ids.session(id)).toBe(id.toLowerCase());
    expect(ids.checkpoint(id.toLowerCase())).toBe(id.toLowerCase());
    expect(ids.session("")).toBe("");
  });

  it("refuses what is not a UUID, quoting at most a short prefix of it", () => {
    for (const bad of ["s1", "0f8fad5b-d9cb-469f-a165-70867728950", "0f8fad5b_d9cb_469f_a165_70867728950e", "x".repeat(4_000_000)]) {
      const err = refusal(() => ids.session(bad, "requests[2].session_id"));
      expect([err.code, err.rawMessage.startsWith("requests[2].session_id: ")]).toEqual([Code.InvalidArgument, true]);
      expect(err.rawMessage.length).toBeLessThan(200);
    }
  });

  it(`takes user and agent ids of up to ${MAX_NAME_BYTES} UTF-8 bytes of printable text`, () => {
    expect(ids.user("u".repeat(MAX_NAME_BYTES))).toBe("u".repeat(MAX_NAME_BYTES));
    expect(ids.user("émilie dupont")).toBe("émilie dupont");
    expect(refusal(() => ids.user("u".repeat(MAX_NAME_BYTES + 1))).rawMessage).toContain("longer than 128 bytes");
    // 43 three-byte characters are 129 bytes in 43 UTF-16 units.
    expect(refusal(() => ids.agent("界".repeat(43))).code).toBe(Code.InvalidArgument);
    for (const forged of ["alice\nlevel=50", "bob\u0000", "a\u202eb", "x\u2028y"]) {
      expect(refusal(() => ids.user(forged)).rawMessage).toContain("control or format character");
    }
  });

  it("bounds a page token without decoding it", () => {
    expect(ids.pageToken("abc")).toBe("abc");
    expect(refusal(() => ids.pageToken("t".repeat(10_000))).code).toBe(Code.InvalidArgument);
  });

  it(`takes an expected version from 0 to ${MAX_VERSION} (2^53-1) exactly, and unset as no check`, () => {
    expect(ids.version(undefined)).toBeUndefined();
    expect(ids.version(0n)).toBe(0);
    expect(ids.version(7n)).toBe(7);
    expect(ids.version(BigInt(MAX_VERSION))).toBe(MAX_VERSION);
    // Past 2^53 Number() rounds: 2^53+1 would compare equal to 2^53.
    for (const bad of [-1n, -(2n ** 63n), BigInt(MAX_VERSION) + 1n, 2n ** 53n + 1n, 2n ** 63n - 1n]) {
      const err = refusal(() => ids.version(bad));
      expect([err.code, err.rawMessage.startsWith("expected_version: ")]).toEqual([Code.InvalidArgument, true]);
    }
  });
});
