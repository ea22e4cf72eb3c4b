import type { Principal } from "@qingyu/plugin-api";
import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";
import type { ApiKeyEntry } from "./options.ts";

/** The hex SHA-256 of an API key: the form config stores it in. */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** Looks a presented API key up among the configured hashes; undefined when none matches. */
export type ApiKeyVerifier = (key: string) => Principal | undefined;

/** A verifier over the configured keys. */
export function createApiKeyVerifier(entries: readonly ApiKeyEntry[]): ApiKeyVerifier {
  const table = entries.map((entry) => ({
    digest: Buffer.from(entry.sha256, "hex"),
    principal: Object.freeze({
      id: entry.id,
      admin: entry.admin,
      roles: Object.freeze([...entry.roles]),
      method: "api-key",
    }) satisfies Principal,
  }));
  return (key) => {
    const digest = createHash("sha256").update(key, "utf8").digest();
    let found: Principal | undefined;
    // Every entry is compared, constant-time, with no early exit: how long the
    // check takes reveals neither which key matched nor how close a guess came.
    for (const entry of table) {
      const match = timingSafeEqual(digest, entry.digest);
      found = match ? entry.principal : found;
    }
    return found;
  };
}
