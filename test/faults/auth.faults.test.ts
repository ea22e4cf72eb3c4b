// Token attacks against the auth plugin configured for RS256 with a PEM public key.
// auth.e2e already refuses no credentials, a wrong API key, and expired, foreign-audience
// and alg:none tokens against an HS256 setup; these are the attacks aimed at the
// public-key path: algorithm confusion, keys smuggled in the token's header, tampering.
import * as grpc from "@grpc/grpc-js";
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, SignJWT, UnsecuredJWT, type JWTHeaderParameters } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { connectCall, crashLines, expectServing } from "./support.ts";

const ISSUER = "https://issuer.faults.test";
const AUDIENCE = "qingyu-faults";
const now = () => Math.floor(Date.now() / 1000);

function rsaPair(): { publicPem: string; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return { publicPem: publicKey, privateKey: createPrivateKey(privateKey) };
}

// Fresh keys per run: the server trusts `trusted`; `attacker` is anyone else's.
const trusted = rsaPair();
const attacker = rsaPair();

interface Claims {
  sub?: string;
  aud?: string;
  exp?: number;
  nbf?: number;
  roles?: string[];
}

function sign(key: KeyObject | Uint8Array, header: JWTHeaderParameters, c: Claims = {}): Promise<string> {
  const jwt = new SignJWT({ roles: c.roles ?? [] })
    .setProtectedHeader(header)
    .setSubject(c.sub ?? "dave")
    .setIssuer(ISSUER)
    .setAudience(c.aud ?? AUDIENCE)
    .setIssuedAt(now() - 10)
    .setExpirationTime(c.exp ?? now() + 600);
  if (c.nbf !== undefined) jwt.setNotBefore(c.nbf);
  return jwt.sign(key);
}

const valid = () => sign(trusted.privateKey, { alg: "RS256" });

describe("JWT attacks on an RS256 (PEM public key) auth setup", () => {
  let server: ServerProcess;
  let client: TestClient;
  // Where a jku / x5u header points: the server must never fetch keys from a token's say-so.
  let keyHost: Server;
  let keyHostHits = 0;
  let keyHostUrl = "";

  beforeAll(async () => {
    keyHost = createServer((_req, res) => {
      keyHostHits++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [] }));
    });
    await new Promise<void>((r) => keyHost.listen(0, "127.0.0.1", r));
    keyHostUrl = `http://127.0.0.1:${(keyHost.address() as AddressInfo).port}/jwks.json`;
    server = await startServer({
      log: { level: "warn" },
      pipeline: [
        "logging",
        { plugin: "auth", options: { jwt: { algorithms: ["RS256"], publicKey: trusted.publicPem, issuer: ISSUER, audience: AUDIENCE } } },
        "validation",
      ],
      agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
    await new Promise((r) => keyHost?.close(r));
  });

  it("accepts a token signed with the configured key (the control: refusals below are the attack's doing)", async () => {
    const res = await client.unary(
      AgentService,
      AgentService.method.execute,
      { agentId: "echo", task: "hi" },
      { metadata: { authorization: `Bearer ${await valid()}` } },
    );
    expect(res.result?.output).toBe("[history=0] hi");
  });

  const tamper = async (edit: (payload: Record<string, unknown>) => void) => {
    const [h, p, s] = (await valid()).split(".");
    const payload = JSON.parse(Buffer.from(p!, "base64url").toString());
    edit(payload);
    return `${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`;
  };

  const attacks: Array<[string, () => Promise<string>, string]> = [
    // The classic confusion: the public key, which anyone has, used as an HMAC secret.
    [
      "HS256 signed with the RS256 public key PEM as the secret",
      () => sign(new TextEncoder().encode(trusted.publicPem), { alg: "HS256" }, { roles: ["admin"] }),
      "unsupported token algorithm",
    ],
    [
      "alg:none",
      async () => new UnsecuredJWT({ roles: ["admin"] }).setSubject("dave").setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime("10m").encode(),
      "unsupported token algorithm",
    ],
    ["RS256 signed by another key", () => sign(attacker.privateKey, { alg: "RS256" }), "token signature is invalid"],
    [
      "another key embedded in the header (jwk)",
      async () => sign(attacker.privateKey, { alg: "RS256", jwk: await exportJWK(createPublicKey(attacker.privateKey)) }),
      "token signature is invalid",
    ],
    [
      "a jku / x5u header pointing at the attacker's keys",
      () => sign(attacker.privateKey, { alg: "RS256", jku: keyHostUrl, x5u: keyHostUrl, kid: "../../../../dev/null" }),
      "token signature is invalid",
    ],
    [
      "a valid token with the payload edited (sub → admin)",
      () => tamper((p) => Object.assign(p, { sub: "root", roles: ["admin"] })),
      "token signature is invalid",
    ],
    ["a valid token with its signature stripped", async () => (await valid()).split(".").slice(0, 2).join(".") + ".", "token signature is invalid"],
    ["an expired RS256 token", () => sign(trusted.privateKey, { alg: "RS256" }, { exp: now() - 3600 }), "token expired"],
    ["an RS256 token for another audience", () => sign(trusted.privateKey, { alg: "RS256" }, { aud: "someone-else" }), "token audience is not accepted"],
    ["an RS256 token not valid for another hour", () => sign(trusted.privateKey, { alg: "RS256" }, { nbf: now() + 3600 }), "token is not valid yet"],
    ["an 8 KiB token of junk", async () => `${"a".repeat(4000)}.${"b".repeat(4000)}.${"c".repeat(200)}`, "malformed token"],
  ];

  it.each(attacks)("refuses %s: UNAUTHENTICATED on gRPC, 401 on Connect, and the server still serves", async (_name, token, message) => {
    const authorization = `Bearer ${await token()}`;
    const rpc = await statusOf(
      client.unary(AgentService, AgentService.method.execute, { agentId: "echo", task: "hi" }, { metadata: { authorization }, timeoutMs: 10_000 }),
    );
    expect(grpc.status[rpc.code], rpc.details).toBe("UNAUTHENTICATED");
    expect(rpc.details).toContain(message);
    const http = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", '{"agentId":"echo","task":"hi"}', { authorization });
    expect([http.status, http.json?.code]).toEqual([401, "unauthenticated"]);
    await expectServing(server, "echo", `Bearer ${await valid()}`);
  });

  it("never fetched keys from a URL a token named", () => {
    expect(keyHostHits).toBe(0);
  });
});
