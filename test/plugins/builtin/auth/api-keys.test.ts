import { Code, type Middleware } from "@qingyu/plugin-api";
import { beforeAll, describe, expect, it } from "vitest";
import { hashApiKey } from "../../../../src/plugins/builtin/auth/api-keys.ts";
import auth from "../../../../src/plugins/builtin/auth/plugin.ts";
import { setUpPlugin } from "../../../support/plugin-context.ts";
import { rejection } from "../../../support/rejection.ts";
import { bearer, refusal, rpcCall, run } from "./helpers.ts";

const ALICE_KEY = "qy_alice_0123456789abcdef";
const ROOT_KEY = "qy_root_fedcba9876543210";

const options = {
  apiKeys: [
    { id: "alice", sha256: hashApiKey(ALICE_KEY), roles: ["writers"] },
    { id: "root", sha256: hashApiKey(ROOT_KEY).toUpperCase(), admin: true },
  ],
};

let mw: Middleware;
beforeAll(async () => {
  mw = await setUpPlugin(auth, options);
});

describe("hashApiKey", () => {
  it("is the hex SHA-256 of the key", () => {
    expect(hashApiKey("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });
});

describe("auth: API keys", () => {
  it("accepts a configured key: the principal is set and becomes the call's user", async () => {
    const { ctx, ran } = await run(mw, { headers: bearer(ALICE_KEY) });
    expect(ran).toBe(true);
    expect(ctx.principal).toEqual({ id: "alice", admin: false, roles: ["writers"], method: "api-key" });
    expect(ctx.userId).toBe("alice");
  });

  it("accepts the scheme in any case", async () => {
    const { ctx } = await run(mw, { headers: { authorization: `bearer ${ALICE_KEY}` } });
    expect(ctx.principal?.id).toBe("alice");
  });

  it("matches a hash given in upper case", async () => {
    const { ctx } = await run(mw, { headers: bearer(ROOT_KEY) });
    expect(ctx.principal).toEqual({ id: "root", admin: true, roles: [], method: "api-key" });
  });

  it("lets a principal name itself as user_id", async () => {
    const { ctx } = await run(mw, { headers: bearer(ALICE_KEY), userId: "alice" });
    expect(ctx.userId).toBe("alice");
  });

  it("refuses an unknown key", async () => {
    expect(await refusal(mw, { headers: bearer(ALICE_KEY + "x") })).toEqual({ code: Code.Unauthenticated, message: "unknown API key" });
  });

  it("refuses a call without an authorization header", async () => {
    expect(await refusal(mw, {})).toEqual({
      code: Code.Unauthenticated,
      message: "missing credentials: send authorization: Bearer <token>",
    });
  });

  it.each([["Basic YWxpY2U6cHc="], ["Bearer"], [`Bearer ${ALICE_KEY} extra`], [ALICE_KEY]])("refuses a malformed header %j", async (value) => {
    expect(await refusal(mw, { headers: { authorization: value } })).toEqual({
      code: Code.Unauthenticated,
      message: "malformed authorization header: expected Bearer <token>",
    });
  });

  it("refuses a non-admin naming another user", async () => {
    const { code, message } = await refusal(mw, { headers: bearer(ALICE_KEY), userId: "bob" });
    expect(code).toBe(Code.PermissionDenied);
    expect(message).toContain('"alice" may not act as user "bob"');
  });

  it("lets an admin act as another user", async () => {
    const { ctx } = await run(mw, { headers: bearer(ROOT_KEY), userId: "bob" });
    expect(ctx.principal?.id).toBe("root");
    expect(ctx.userId).toBe("bob");
  });

  it("refuses a JWT-shaped credential when no jwt block is configured", async () => {
    const { code, message } = await refusal(mw, { headers: bearer("aaa.bbb.ccc") });
    expect(code).toBe(Code.Unauthenticated);
    expect(message).toMatch(/JWT bearer tokens are not accepted/);
  });
});

describe("auth: admit", () => {
  it("sets call.principal for a valid key", async () => {
    const call = rpcCall(bearer(ROOT_KEY));
    await mw.admit!(call);
    expect(call.principal).toEqual({ id: "root", admin: true, roles: [], method: "api-key" });
  });

  it("refuses a missing or unknown key the same way as process", async () => {
    const missing = await rejection(Promise.resolve().then(() => mw.admit!(rpcCall({}))));
    expect(missing.code).toBe(Code.Unauthenticated);
    const unknown = await rejection(Promise.resolve().then(() => mw.admit!(rpcCall(bearer("nope")))));
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.Unauthenticated, "unknown API key"]);
  });
});

describe("auth: allowAnonymous", () => {
  it("lets a call without credentials through with no principal and no user", async () => {
    const anon = await setUpPlugin(auth, { ...options, allowAnonymous: true });
    const { ctx, ran } = await run(anon, {});
    expect(ran).toBe(true);
    expect(ctx.principal).toBeUndefined();
    expect(ctx.userId).toBe("");
    const call = rpcCall({});
    await anon.admit!(call);
    expect(call.principal).toBeUndefined();
  });

  // Naming a user would spend that user's rate limits and put events in their stream.
  it("refuses an anonymous call that names a user", async () => {
    const anon = await setUpPlugin(auth, { ...options, allowAnonymous: true });
    const refused = await refusal(anon, { userId: "bob" });
    expect([refused.code, refused.message]).toEqual([Code.Unauthenticated, expect.stringContaining("anonymous callers may not act as a user")]);
  });

  it("still refuses bad credentials", async () => {
    const anon = await setUpPlugin(auth, { ...options, allowAnonymous: true });
    expect((await refusal(anon, { headers: bearer("wrong") })).message).toBe("unknown API key");
  });
});
