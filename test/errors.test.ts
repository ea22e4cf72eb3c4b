import { Code, ConnectError } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { abortReason, codeName, toConnectError } from "../src/errors.ts";

describe("errors", () => {
  it("names codes as gRPC does", () => {
    expect(codeName(Code.InvalidArgument)).toBe("INVALID_ARGUMENT");
    expect(codeName(Code.Canceled)).toBe("CANCELLED");
    expect(codeName(Code.DeadlineExceeded)).toBe("DEADLINE_EXCEEDED");
    expect(codeName(Code.NotFound)).toBe("NOT_FOUND");
  });

  it("turns anything unnamed into INTERNAL, never UNKNOWN, keeping the cause", () => {
    const cause = new TypeError("boom");
    const err = toConnectError(cause);
    expect(err.code).toBe(Code.Internal);
    expect(err.cause).toBe(cause);
    expect(toConnectError("text").code).toBe(Code.Internal);
    const named = new ConnectError("x", Code.Aborted);
    expect(toConnectError(named)).toBe(named);
  });

  it("reads an abort's reason, CANCELLED when it is not one of ours", () => {
    const ours = new AbortController();
    ours.abort(new ConnectError("late", Code.DeadlineExceeded));
    expect(abortReason(ours.signal).code).toBe(Code.DeadlineExceeded);
    const plain = new AbortController();
    plain.abort();
    expect(abortReason(plain.signal).code).toBe(Code.Canceled);
  });
});
