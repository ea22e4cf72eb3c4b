import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportSPKI, generateKeyPair, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { hashApiKey } from "../../../../src/plugins/builtin/auth/api-keys.ts";
import auth from "../../../../src/plugins/builtin/auth/plugin.ts";
import { setUpPlugin } from "../../../support/plugin-context.ts";
import { bearer, run } from "./helpers.ts";

const SECRET = "a-test-only-hs256-secret-of-40-bytes-long";

describe("auth: options", () => {
  it("refuses a config with neither apiKeys nor jwt", async () => {
    await expect(setUpPlugin(auth, undefined)).rejects.toThrow(/configure apiKeys or jwt/);
    await expect(setUpPlugin(auth, { apiKeys: [] })).rejects.toThrow(/configure apiKeys or jwt/);
  });

  it("refuses a jwt block without a key", async () => {
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["RS256"] } })).rejects.toThrow(/needs a key/);
  });

  it("refuses a jwt block with two key sources", async () => {
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["HS256"], secret: SECRET, secretEnv: "X" } })).rejects.toThrow(/exactly one key source/);
  });

  it("refuses mixing HS256 with a public key, and RS256 with a secret", async () => {
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["RS256", "HS256"], jwksUrl: "https://idp.test/jwks" } })).rejects.toThrow(/HS256 needs secret/);
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["RS256"], secret: SECRET } })).rejects.toThrow(/verifies HS256 only/);
  });

  it("refuses an empty algorithm list, an unknown algorithm and a short secret", async () => {
    await expect(setUpPlugin(auth, { jwt: { algorithms: [], secret: SECRET } })).rejects.toThrow();
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["none"], secret: SECRET } })).rejects.toThrow();
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["HS256"], secret: "short" } })).rejects.toThrow(/at least 32/);
  });

  it("refuses an API key given in place of its hash, and unknown fields", async () => {
    await expect(setUpPlugin(auth, { apiKeys: [{ id: "a", sha256: "qy_plain_key" }] })).rejects.toThrow(/64 hex digits/);
    await expect(setUpPlugin(auth, { apiKeys: [{ id: "a", sha256: hashApiKey("k"), key: "k" }] })).rejects.toThrow();
  });

  it("refuses the same key hash listed twice", async () => {
    const sha256 = hashApiKey("k");
    await expect(
      setUpPlugin(auth, {
        apiKeys: [
          { id: "a", sha256 },
          { id: "b", sha256 },
        ],
      }),
    ).rejects.toThrow(/listed twice/);
  });

  it("fails setup when secretEnv names an unset variable", async () => {
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["HS256"], secretEnv: "QY_MISSING" } }, { env: {} })).rejects.toThrow(/QY_MISSING is not set/);
  });

  it("fails setup when the public key does not fit the algorithm or is not PEM", async () => {
    const es = await generateKeyPair("ES256");
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["RS256"], publicKey: await exportSPKI(es.publicKey) } })).rejects.toThrow(
      /not a PEM SPKI public key usable for RS256/,
    );
    await expect(setUpPlugin(auth, { jwt: { algorithms: ["ES256"], publicKey: "not a pem" } })).rejects.toThrow(/usable for ES256/);
  });

  it("reads publicKeyFile, and fails setup when the file is missing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "qy-auth-"));
    try {
      const pair = await generateKeyPair("RS256");
      const file = join(dir, "jwt.pem");
      await writeFile(file, await exportSPKI(pair.publicKey));
      const mw = await setUpPlugin(auth, { jwt: { algorithms: ["RS256"], publicKeyFile: file } });
      const signed = await new SignJWT({}).setProtectedHeader({ alg: "RS256" }).setSubject("erin").setExpirationTime("5m").sign(pair.privateKey);
      expect((await run(mw, { headers: bearer(signed) })).ctx.principal?.id).toBe("erin");
      await expect(setUpPlugin(auth, { jwt: { algorithms: ["RS256"], publicKeyFile: join(dir, "missing.pem") } })).rejects.toThrow(/cannot read/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
