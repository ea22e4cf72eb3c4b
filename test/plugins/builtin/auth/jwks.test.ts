import { Code, type Middleware } from "@qingyu/plugin-api";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import auth from "../../../../src/plugins/builtin/auth/plugin.ts";
import { setUpPlugin } from "../../../support/plugin-context.ts";
import { bearer, refusal, run } from "./helpers.ts";

let server: Server;
let url: string;
let fetches = 0;
let esKey: CryptoKey;
let rsKey: CryptoKey;

beforeAll(async () => {
  const es = await generateKeyPair("ES256");
  const rs = await generateKeyPair("RS256");
  esKey = es.privateKey;
  rsKey = rs.privateKey;
  const body = JSON.stringify({
    keys: [
      { ...(await exportJWK(es.publicKey)), kid: "es-1", alg: "ES256", use: "sig" },
      { ...(await exportJWK(rs.publicKey)), kid: "rs-1", alg: "RS256", use: "sig" },
    ],
  });
  server = createServer((req, res) => {
    fetches++;
    if (req.url !== "/jwks.json") return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": "application/json" }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

function token(key: CryptoKey, alg: string, kid: string): Promise<string> {
  return new SignJWT({ roles: ["readers"] }).setProtectedHeader({ alg, kid }).setSubject("dave").setExpirationTime("5m").sign(key);
}

describe("auth: JWKS", () => {
  let mw: Middleware;
  beforeAll(async () => {
    mw = await setUpPlugin(auth, { jwt: { algorithms: ["ES256", "RS256"], jwksUrl: `${url}/jwks.json` } });
  });

  it("verifies tokens with the key their kid names, fetching the set once", async () => {
    const before = fetches;
    const es = await run(mw, { headers: bearer(await token(esKey, "ES256", "es-1")) });
    expect(es.ctx.principal).toEqual({ id: "dave", admin: false, roles: ["readers"], method: "jwt" });
    const rs = await run(mw, { headers: bearer(await token(rsKey, "RS256", "rs-1")) });
    expect(rs.ctx.principal?.id).toBe("dave");
    expect(fetches - before).toBe(1);
  });

  it("refuses a token whose kid is not in the set", async () => {
    expect(await refusal(mw, { headers: bearer(await token(esKey, "ES256", "es-2")) })).toEqual({
      code: Code.Unauthenticated,
      message: "token signing key is unknown (no matching kid in the JWKS)",
    });
  });

  it("refuses a token signed by a key outside the set under a known kid", async () => {
    const stranger = await generateKeyPair("ES256");
    expect((await refusal(mw, { headers: bearer(await token(stranger.privateKey, "ES256", "es-1")) })).message).toBe("token signature is invalid");
  });

  it("answers UNAVAILABLE when the JWKS cannot be fetched", async () => {
    const missing = await setUpPlugin(auth, { jwt: { algorithms: ["ES256"], jwksUrl: `${url}/nowhere.json` } });
    const refused = await refusal(missing, { headers: bearer(await token(esKey, "ES256", "es-1")) });
    expect(refused.code).toBe(Code.Unavailable);
    expect(refused.message).toMatch(/JWKS/);
    const unreachable = await setUpPlugin(auth, { jwt: { algorithms: ["ES256"], jwksUrl: "http://127.0.0.1:1/jwks.json" } });
    expect((await refusal(unreachable, { headers: bearer(await token(esKey, "ES256", "es-1")) })).code).toBe(Code.Unavailable);
  });
});
