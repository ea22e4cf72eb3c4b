import { Code, type Middleware } from "@qingyu/plugin-api";
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { hashApiKey } from "../../../../src/plugins/builtin/auth/api-keys.ts";
import auth from "../../../../src/plugins/builtin/auth/plugin.ts";
import { setUpPlugin } from "../../../support/plugin-context.ts";
import { bearer, refusal, rpcCall, run } from "./helpers.ts";

const SECRET = "a-test-only-hs256-secret-of-40-bytes-long";
const ISSUER = "https://issuer.test";
const AUDIENCE = "qingyu";

/** A signed token with sensible defaults (1 h expiry, our issuer and audience). */
async function token(
  key: CryptoKey | Uint8Array,
  alg: string,
  claims: JWTPayload = {},
  { exp = "1h" as string | number, iss = ISSUER, aud = AUDIENCE as string | undefined } = {},
): Promise<string> {
  const jwt = new SignJWT({ roles: ["writers"], ...claims }).setProtectedHeader({ alg }).setSubject("alice").setIssuer(iss).setIssuedAt();
  if (aud !== undefined) jwt.setAudience(aud);
  if (exp !== 0) jwt.setExpirationTime(exp);
  return jwt.sign(key);
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("auth: HS256", () => {
  let mw: Middleware;
  const key = new TextEncoder().encode(SECRET);
  beforeAll(async () => {
    mw = await setUpPlugin(auth, { jwt: { algorithms: ["HS256"], secret: SECRET, issuer: ISSUER, audience: AUDIENCE } });
  });

  it("accepts a valid token: subject and roles become the principal", async () => {
    const { ctx, ran } = await run(mw, { headers: bearer(await token(key, "HS256")) });
    expect(ran).toBe(true);
    expect(ctx.principal).toEqual({ id: "alice", admin: false, roles: ["writers"], method: "jwt" });
    expect(ctx.userId).toBe("alice");
  });

  it("reads a space-separated roles string, and the admin role makes an admin who may act for others", async () => {
    const { ctx } = await run(mw, { headers: bearer(await token(key, "HS256", { roles: "admin ops" })), userId: "bob" });
    expect(ctx.principal).toEqual({ id: "alice", admin: true, roles: ["admin", "ops"], method: "jwt" });
    expect(ctx.userId).toBe("bob");
  });

  it("refuses a non-admin token naming another user", async () => {
    expect((await refusal(mw, { headers: bearer(await token(key, "HS256")), userId: "bob" })).code).toBe(Code.PermissionDenied);
  });

  it("reads the secret from the environment with secretEnv", async () => {
    const fromEnv = await setUpPlugin(auth, { jwt: { algorithms: ["HS256"], secretEnv: "QY_JWT_SECRET" } }, { env: { QY_JWT_SECRET: SECRET } });
    const { ctx } = await run(fromEnv, { headers: bearer(await token(key, "HS256")) });
    expect(ctx.principal?.id).toBe("alice");
  });

  // API-key ids and JWT subjects are one user namespace unless subjectPrefix separates them.
  it("keeps a token whose subject equals an API key's id out of that key's user with subjectPrefix", async () => {
    const both = {
      apiKeys: [{ id: "alice", sha256: hashApiKey("alice-key-0123456789") }],
      jwt: { algorithms: ["HS256"], secret: SECRET, subjectPrefix: "jwt:" },
    };
    const mixed = await setUpPlugin(auth, both);
    const viaJwt = await run(mixed, { headers: bearer(await token(key, "HS256")) });
    const viaKey = await run(mixed, { headers: bearer("alice-key-0123456789") });
    expect([viaJwt.ctx.userId, viaKey.ctx.userId]).toEqual(["jwt:alice", "alice"]);
    expect((await refusal(mixed, { headers: bearer(await token(key, "HS256")), userId: "alice" })).code).toBe(Code.PermissionDenied);
  });

  it("refuses a subject longer than a user id may be", async () => {
    const long = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("x".repeat(129))
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime("1h")
      .sign(key);
    expect((await refusal(mw, { headers: bearer(long) })).code).toBe(Code.Unauthenticated);
  });

  it("refuses an expired token", async () => {
    const expired = await token(key, "HS256", {}, { exp: Math.floor(Date.now() / 1000) - 60 });
    expect(await refusal(mw, { headers: bearer(expired) })).toEqual({ code: Code.Unauthenticated, message: "token expired" });
  });

  it("tolerates a few seconds of clock skew on expiry", async () => {
    const justExpired = await token(key, "HS256", {}, { exp: Math.floor(Date.now() / 1000) - 2 });
    expect((await run(mw, { headers: bearer(justExpired) })).ran).toBe(true);
  });

  it("refuses a token without exp unless requireExpiry is false", async () => {
    const forever = await token(key, "HS256", {}, { exp: 0 });
    expect(await refusal(mw, { headers: bearer(forever) })).toEqual({ code: Code.Unauthenticated, message: "token has no expiry (exp claim)" });
    const lax = await setUpPlugin(auth, { jwt: { algorithms: ["HS256"], secret: SECRET, requireExpiry: false } });
    expect((await run(lax, { headers: bearer(forever) })).ran).toBe(true);
  });

  it("refuses a token for another audience", async () => {
    const other = await token(key, "HS256", {}, { aud: "someone-else" });
    expect(await refusal(mw, { headers: bearer(other) })).toEqual({ code: Code.Unauthenticated, message: "token audience is not accepted" });
  });

  it("refuses a token from another issuer", async () => {
    const other = await token(key, "HS256", {}, { iss: "https://evil.test" });
    expect(await refusal(mw, { headers: bearer(other) })).toEqual({ code: Code.Unauthenticated, message: "token issuer is not accepted" });
  });

  it("refuses a token that is not valid yet", async () => {
    const early = await token(key, "HS256", { nbf: Math.floor(Date.now() / 1000) + 600 });
    expect(await refusal(mw, { headers: bearer(early) })).toEqual({ code: Code.Unauthenticated, message: "token is not valid yet" });
  });

  it("refuses a token signed with another secret", async () => {
    const forged = await token(new TextEncoder().encode("another-secret-that-is-also-40-bytes-long"), "HS256");
    expect(await refusal(mw, { headers: bearer(forged) })).toEqual({ code: Code.Unauthenticated, message: "token signature is invalid" });
  });

  it("refuses an unsigned alg:none token", async () => {
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${b64url({ alg: "none", typ: "JWT" })}.${b64url({ sub: "root", roles: ["admin"], iss: ISSUER, aud: AUDIENCE, exp: now + 3600 })}.`;
    expect(await refusal(mw, { headers: bearer(unsigned) })).toEqual({ code: Code.Unauthenticated, message: "unsupported token algorithm" });
  });

  it("refuses a token without a subject", async () => {
    const anonymous = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime("1h").sign(key);
    expect(await refusal(mw, { headers: bearer(anonymous) })).toEqual({ code: Code.Unauthenticated, message: 'token has no "sub" claim' });
  });

  it("refuses a JWT-shaped credential whose parts are not JSON", async () => {
    expect(await refusal(mw, { headers: bearer("abc.def.ghi") })).toEqual({ code: Code.Unauthenticated, message: "malformed token" });
  });

  it("sets call.principal in admit", async () => {
    const call = rpcCall(bearer(await token(key, "HS256")));
    await mw.admit!(call);
    expect(call.principal).toEqual({ id: "alice", admin: false, roles: ["writers"], method: "jwt" });
  });
});

describe("auth: RS256", () => {
  let mw: Middleware;
  let privateKey: CryptoKey;
  let pem: string;
  beforeAll(async () => {
    const pair = await generateKeyPair("RS256");
    privateKey = pair.privateKey;
    pem = await exportSPKI(pair.publicKey);
    mw = await setUpPlugin(auth, {
      jwt: {
        algorithms: ["RS256"],
        publicKey: pem,
        issuer: ISSUER,
        audience: [AUDIENCE, "other"],
        subjectClaim: "email",
        rolesClaim: "realm_access.roles",
        adminRole: "superuser",
      },
    });
  });

  it("accepts a valid token, reading custom and nested claims", async () => {
    const signed = await token(privateKey, "RS256", { email: "carol@example.com", realm_access: { roles: ["superuser", "x"] } });
    const { ctx } = await run(mw, { headers: bearer(signed) });
    expect(ctx.principal).toEqual({ id: "carol@example.com", admin: true, roles: ["superuser", "x"], method: "jwt" });
  });

  it("refuses HS256 signed with the RS256 public key as the HMAC secret", async () => {
    const confused = await token(new TextEncoder().encode(pem), "HS256", { email: "mallory@example.com", realm_access: { roles: ["superuser"] } });
    expect(await refusal(mw, { headers: bearer(confused) })).toEqual({ code: Code.Unauthenticated, message: "unsupported token algorithm" });
  });

  it("refuses a token whose signature was tampered with", async () => {
    const [h, p, s] = (await token(privateKey, "RS256", { email: "carol@example.com" })).split(".") as [string, string, string];
    const flipped = s.slice(0, 20) + (s[20] === "A" ? "B" : "A") + s.slice(21);
    expect(await refusal(mw, { headers: bearer(`${h}.${p}.${flipped}`) })).toEqual({ code: Code.Unauthenticated, message: "token signature is invalid" });
  });

  it("refuses a token whose payload was changed after signing", async () => {
    const [h, , s] = (await token(privateKey, "RS256", { email: "carol@example.com" })).split(".");
    const now = Math.floor(Date.now() / 1000);
    const payload = b64url({ email: "root@example.com", realm_access: { roles: ["superuser"] }, iss: ISSUER, aud: AUDIENCE, exp: now + 60 });
    expect((await refusal(mw, { headers: bearer(`${h}.${payload}.${s}`) })).message).toBe("token signature is invalid");
  });

  it("refuses a token signed by another RSA key", async () => {
    const other = await generateKeyPair("RS256");
    const signed = await token(other.privateKey, "RS256", { email: "carol@example.com" });
    expect((await refusal(mw, { headers: bearer(signed) })).message).toBe("token signature is invalid");
  });
});

describe("auth: ES256", () => {
  it("accepts a valid token verified with an ES256 public key", async () => {
    const pair = await generateKeyPair("ES256");
    const mw = await setUpPlugin(auth, { jwt: { algorithms: ["ES256"], publicKey: await exportSPKI(pair.publicKey) } });
    const { ctx } = await run(mw, { headers: bearer(await token(pair.privateKey, "ES256", { roles: ["readers"] })) });
    expect(ctx.principal).toEqual({ id: "alice", admin: false, roles: ["readers"], method: "jwt" });
  });

  it("refuses an RS256 token when only ES256 is configured", async () => {
    const es = await generateKeyPair("ES256");
    const rs = await generateKeyPair("RS256");
    const mw = await setUpPlugin(auth, { jwt: { algorithms: ["ES256"], publicKey: await exportSPKI(es.publicKey) } });
    expect((await refusal(mw, { headers: bearer(await token(rs.privateKey, "RS256")) })).message).toBe("unsupported token algorithm");
  });
});

describe("auth: API keys and JWTs together", () => {
  it("routes each credential to its own check", async () => {
    const mw = await setUpPlugin(auth, { apiKeys: [{ id: "svc", sha256: hashApiKey("svc-key") }], jwt: { algorithms: ["HS256"], secret: SECRET } });
    expect((await run(mw, { headers: bearer("svc-key") })).ctx.principal?.method).toBe("api-key");
    expect((await run(mw, { headers: bearer(await token(new TextEncoder().encode(SECRET), "HS256")) })).ctx.principal?.method).toBe("jwt");
  });
});
