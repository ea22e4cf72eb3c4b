import { createHmac, timingSafeEqual } from "node:crypto";

/** Header carrying the unix time (seconds) the request was signed at. */
export const TIMESTAMP_HEADER = "x-qingyu-timestamp";
/** Header carrying `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. */
export const SIGNATURE_HEADER = "x-qingyu-signature";

/** Request headers as node:http gives them (lower-case keys), a plain object, or a fetch Headers. */
export type WebhookHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

/** The signature header's value for `body` sent at `timestamp` (unix seconds). */
export function signWebhook(secret: string, timestamp: number, body: string | Uint8Array): string {
  return `v1=${mac(secret, String(timestamp), body).toString("hex")}`;
}

/**
 * Whether a received webhook is genuine and fresh: its signature matches the
 * raw body and timestamp under `secret` (compared in constant time), and its
 * timestamp is within `toleranceSeconds` of now, so a captured request cannot
 * be replayed later. Pass the body exactly as received, before parsing JSON.
 */
export function verifyWebhook(secret: string, body: string | Uint8Array, headers: WebhookHeaders, toleranceSeconds = 300): boolean {
  const timestamp = header(headers, TIMESTAMP_HEADER);
  const signature = header(headers, SIGNATURE_HEADER);
  if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = mac(secret, timestamp, body);
  let valid = false;
  // A comma-separated list leaves room for signing with two secrets while one is rotated.
  for (const part of signature.split(",")) {
    const [scheme, hex] = part.trim().split("=");
    if (scheme !== "v1" || hex === undefined || !/^[0-9a-fA-F]{64}$/.test(hex)) continue;
    if (timingSafeEqual(Buffer.from(hex, "hex"), expected)) valid = true;
  }
  return valid;
}

function mac(secret: string, timestamp: string, body: string | Uint8Array): Buffer {
  return createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest();
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
  const record = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
  let value = record[name];
  if (value === undefined) {
    const key = Object.keys(record).find((k) => k.toLowerCase() === name);
    value = key === undefined ? undefined : record[key];
  }
  return typeof value === "string" ? value : value?.[0];
}
