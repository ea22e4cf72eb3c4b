import { ConnectError as ConnectEsError, Code as ConnectEsCode } from "@connectrpc/connect";
import { Code, ConnectError, ProviderError, invalidArgument } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { useSdkCopy } from "../../support/sdk-copy.ts";

const copy = useSdkCopy();

describe("the SDK's ConnectError and connect-es's", () => {
  it("connect-es recognises the SDK's ConnectError: instanceof, and ConnectError.from returns it unchanged", () => {
    const err = new ConnectError("slow down", Code.ResourceExhausted, { "retry-after-ms": "500" });
    expect(err instanceof ConnectEsError).toBe(true);
    const from = ConnectEsError.from(err);
    expect(from).toBe(err);
    expect(from.code).toBe(ConnectEsCode.ResourceExhausted);
    expect(from.metadata.get("retry-after-ms")).toBe("500");
    expect(from.rawMessage).toBe("slow down");
  });

  it("uses connect-es's code numbers", () => {
    for (const [name, value] of Object.entries(ConnectEsCode)) {
      if (typeof value === "number") expect((Code as unknown as Record<string, number>)[name]).toBe(value);
    }
  });

  it("prefixes the message as connect-es does", () => {
    expect(new ConnectError("msg", Code.InvalidArgument).message).toBe("[invalid_argument] msg");
    expect(new ConnectError("msg", Code.InvalidArgument).message).toBe(new ConnectEsError("msg", ConnectEsCode.InvalidArgument).message);
    expect(new ConnectError("", Code.Unavailable).message).toBe(new ConnectEsError("", ConnectEsCode.Unavailable).message);
    expect(new ConnectError("x", Code.DeadlineExceeded).message).toBe(new ConnectEsError("x", ConnectEsCode.DeadlineExceeded).message);
    expect(invalidArgument("task", "is empty").message).toBe("[invalid_argument] task: is empty");
  });

  it("recognises connect-es's ConnectError as its own", () => {
    const theirs = new ConnectEsError("gone", ConnectEsCode.NotFound);
    expect(theirs instanceof ConnectError).toBe(true);
    expect(theirs instanceof ProviderError).toBe(false);
  });

  it("a ProviderError is a ConnectError (of both), but a plain ConnectError is not a ProviderError", () => {
    const provider = new ProviderError("upstream down", Code.Unavailable, true, 250);
    expect(provider instanceof ConnectError).toBe(true);
    expect(provider instanceof ConnectEsError).toBe(true);
    expect(ConnectEsError.from(provider)).toBe(provider);
    expect(provider.message).toBe("[unavailable] upstream down");
    expect(new ConnectError("down", Code.Unavailable) instanceof ProviderError).toBe(false);
    expect(new Error("down") instanceof ConnectError).toBe(false);
  });
});

describe("errors from a separately installed copy of the SDK", () => {
  it("is really another copy: other classes, outside this repository", () => {
    const { sdk, dir } = copy();
    expect(sdk.ConnectError).not.toBe(ConnectError);
    expect(sdk.ProviderError).not.toBe(ProviderError);
    expect(dir.startsWith(process.cwd())).toBe(false);
    expect(import.meta.resolve("@qingyu/plugin-api")).not.toContain(dir);
  });

  it("its ConnectError is this copy's (and connect-es's) ConnectError, with code, message and metadata", () => {
    const { sdk } = copy();
    const err = new sdk.ConnectError("nope", sdk.Code.PermissionDenied, { "x-reason": "policy" });
    expect(err instanceof ConnectError).toBe(true);
    expect(err instanceof ProviderError).toBe(false);
    expect(err instanceof ConnectEsError).toBe(true);
    expect(ConnectEsError.from(err)).toBe(err);
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.message).toBe("[permission_denied] nope");
    expect(err.metadata.get("x-reason")).toBe("policy");
  });

  it("its ProviderError is this copy's ProviderError, keeping retryable and Retry-After", () => {
    const { sdk } = copy();
    const err: unknown = new sdk.ProviderError("busy", sdk.Code.ResourceExhausted, true, 300);
    expect(err instanceof ProviderError).toBe(true);
    expect(err instanceof ConnectError).toBe(true);
    expect(err instanceof ConnectEsError).toBe(true);
    const seen = err as ProviderError;
    expect([seen.code, seen.retryable, seen.retryAfterMs, seen.rawMessage]).toEqual([Code.ResourceExhausted, true, 300, "busy"]);
  });

  it("and the other way round: this copy's errors are the other copy's", () => {
    const { sdk } = copy();
    expect(new ConnectError("x", Code.Aborted) instanceof sdk.ConnectError).toBe(true);
    expect(new ConnectError("x", Code.Aborted) instanceof sdk.ProviderError).toBe(false);
    expect(new ProviderError("x", Code.Unavailable, false) instanceof sdk.ProviderError).toBe(true);
    expect(new ProviderError("x", Code.Unavailable, false) instanceof sdk.ConnectError).toBe(true);
    expect(new ConnectEsError("x", ConnectEsCode.Aborted) instanceof sdk.ConnectError).toBe(true);
  });

  it("its helpers throw errors this copy recognises (actingUser, notFound)", () => {
    const { sdk } = copy();
    let thrown: unknown;
    try {
      sdk.actingUser({ id: "bob", admin: false, roles: [], method: "api-key" }, "alice");
    } catch (err) {
      thrown = err;
    }
    expect(thrown instanceof ConnectError).toBe(true);
    expect((thrown as ConnectError).code).toBe(Code.PermissionDenied);
    expect(sdk.notFound("agent", "x") instanceof ConnectError).toBe(true);
  });
});
