import { ConnectError as ConnectEsError, Code as ConnectEsCode } from "@connectrpc/connect";
import { Code, ConnectError, ErrorReason, ProviderError, invalidArgument, limitExceeded, notFound, reasonOf, withReason } from "@qingyu/plugin-api";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { useSdkCopy } from "../../support/sdk-copy.ts";

const copy = useSdkCopy();

describe("error reasons", () => {
  it("withReason attaches a reason and metadata, returns the same error, and leaves the constructor as it was", () => {
    const err = new ConnectError("the task contains a blocked word", Code.InvalidArgument, { "x-trace": "1" });
    expect(withReason(err, "BLOCKED_WORD", { word: "secret" })).toBe(err);
    expect(reasonOf(err)).toEqual({ reason: "BLOCKED_WORD", metadata: { word: "secret" } });
    // Not enumerable: logs and JSON of the error are as before.
    expect(Object.keys(err)).not.toContain("reason");
    expect([err.code, err.rawMessage, err.metadata.get("x-trace"), err.details]).toEqual([Code.InvalidArgument, "the task contains a blocked word", "1", []]);
    withReason(err, ErrorReason.LIMIT_EXCEEDED);
    expect(reasonOf(err)).toEqual({ reason: "LIMIT_EXCEEDED", metadata: {} });
  });

  it("an error given no reason has its code's name (CANCELLED, as gRPC spells it); anything else is INTERNAL", () => {
    expect(reasonOf(new ConnectError("x", Code.InvalidArgument)).reason).toBe("INVALID_ARGUMENT");
    expect(reasonOf(new ConnectError("x", Code.Canceled)).reason).toBe("CANCELLED");
    expect(reasonOf(new ConnectError("x", Code.DeadlineExceeded)).reason).toBe("DEADLINE_EXCEEDED");
    expect(reasonOf(new ConnectEsError("x", ConnectEsCode.PermissionDenied)).reason).toBe("PERMISSION_DENIED");
    expect(reasonOf(new TypeError("boom"))).toEqual({ reason: "INTERNAL", metadata: {} });
  });

  it("invalidArgument names the field in INVALID_FIELD's metadata, limitExceeded the field and the setting", () => {
    const bad = invalidArgument("requests[3].session_id", "is not a session id");
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toBe("requests[3].session_id: is not a session id");
    expect(reasonOf(bad)).toEqual({ reason: ErrorReason.INVALID_FIELD, metadata: { field: "requests[3].session_id" } });
    const big = limitExceeded("task", "is 70000 bytes", "validation.maxTaskBytes", 65536);
    expect(big.code).toBe(Code.InvalidArgument);
    expect(reasonOf(big)).toEqual({ reason: ErrorReason.LIMIT_EXCEEDED, metadata: { field: "task", limit: "validation.maxTaskBytes", max: "65536" } });
  });

  it("notFound's reason is named for what was not found, its metadata holds the id", () => {
    const id = "3f1b1c8e-0000-4000-8000-000000000000";
    expect(reasonOf(notFound("session", id))).toEqual({ reason: ErrorReason.SESSION_NOT_FOUND, metadata: { session_id: id } });
    expect(reasonOf(notFound("checkpoint", id)).reason).toBe(ErrorReason.CHECKPOINT_NOT_FOUND);
    expect(reasonOf(notFound("agent", "nope"))).toEqual({ reason: ErrorReason.AGENT_NOT_FOUND, metadata: { agent_id: "nope" } });
    expect(notFound("agent", "nope").rawMessage).toBe('agent "nope" not found');
    expect(reasonOf(notFound("price list", "x")).reason).toBe("PRICE_LIST_NOT_FOUND");
  });

  it("a ProviderError given none has the provider reason of its code, with the upstream's Retry-After", () => {
    expect(reasonOf(new ProviderError("429", Code.ResourceExhausted, true, 1500.2))).toEqual({
      reason: ErrorReason.PROVIDER_RATE_LIMITED,
      metadata: { retry_after_ms: "1501" },
    });
    expect(reasonOf(new ProviderError("429", Code.ResourceExhausted, true)).metadata).toEqual({});
    expect(reasonOf(new ProviderError("down", Code.Unavailable, true)).reason).toBe(ErrorReason.PROVIDER_UNAVAILABLE);
    expect(reasonOf(new ProviderError("401", Code.Unauthenticated, false)).reason).toBe(ErrorReason.PROVIDER_REJECTED);
    expect(reasonOf(new ProviderError("garbage", Code.Internal, false)).reason).toBe(ErrorReason.PROVIDER_ERROR);
    expect(reasonOf(withReason(new ProviderError("mine", Code.Unavailable, false), "QUOTA_GONE")).reason).toBe("QUOTA_GONE");
  });

  it("the README's table lists every reason, and no other", () => {
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("### Error reasons"), readme.indexOf("\n## ", readme.indexOf("### Error reasons")));
    const listed = [...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(listed.toSorted()).toEqual(Object.values(ErrorReason).toSorted());
  });

  it("a reason attached by another copy of the SDK is read by this one, and the other way round", () => {
    const { sdk } = copy();
    const theirs = sdk.withReason(new sdk.ConnectError("slow down", sdk.Code.ResourceExhausted), sdk.ErrorReason.RATE_LIMITED, { retry_after_ms: "250" });
    expect(reasonOf(theirs)).toEqual({ reason: "RATE_LIMITED", metadata: { retry_after_ms: "250" } });
    expect(reasonOf(sdk.invalidArgument("task", "is empty"))).toEqual({ reason: "INVALID_FIELD", metadata: { field: "task" } });
    expect(sdk.reasonOf(notFound("session", "s1"))).toEqual({ reason: "SESSION_NOT_FOUND", metadata: { session_id: "s1" } });
  });
});
