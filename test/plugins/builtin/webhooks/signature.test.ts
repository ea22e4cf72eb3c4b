import { parseOptions } from "../../../support/plugin-context.ts";
import { afterEach, describe, expect, it } from "vitest";
import { signWebhook, verifyWebhook } from "../../../../src/plugins/builtin/webhooks/plugin.ts";
import webhooks from "../../../../src/plugins/builtin/webhooks/plugin.ts";
import { SECRET, runtimeEvent, setUp, startReceiver, waitFor, type Receiver } from "./helpers.ts";

const receivers: Receiver[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
});

describe("webhook signature", () => {
  it("is checked by a receiver with verifyWebhook; a tampered body, wrong secret or old timestamp is rejected", async () => {
    const verdicts: boolean[] = [];
    const receiver = await startReceiver((_n, req) => {
      const ok = verifyWebhook(SECRET, req.body, req.headers);
      verdicts.push(ok);
      return ok ? 200 : 401;
    });
    receivers.push(receiver);
    const { handler, lines } = await setUp({ endpoints: [{ url: receiver.url, secret: SECRET }] });
    await handler.handle(runtimeEvent());
    await handler.dispose!();

    expect(verdicts).toEqual([true]);
    const { body, headers } = receiver.requests[0]!;
    expect(headers["x-qingyu-signature"]).toMatch(/^v1=[0-9a-f]{64}$/);
    expect(verifyWebhook(SECRET, Buffer.from(body, "utf8"), headers)).toBe(true);
    expect(verifyWebhook(SECRET, body.replace("alice", "mallory"), headers)).toBe(false);
    expect(verifyWebhook(`${SECRET}x`, body, headers)).toBe(false);
    expect(verifyWebhook(SECRET, body, { ...headers, "x-qingyu-signature": undefined })).toBe(false);

    // Correctly signed but ten minutes old: a replay.
    const old = Math.floor(Date.now() / 1000) - 600;
    const replayed = { ...headers, "x-qingyu-timestamp": String(old), "x-qingyu-signature": signWebhook(SECRET, old, body) };
    expect(verifyWebhook(SECRET, body, replayed)).toBe(false);
    expect(verifyWebhook(SECRET, body, replayed, 900)).toBe(true);
    // The timestamp is signed too: moving it forward breaks the signature.
    expect(verifyWebhook(SECRET, body, { ...replayed, "x-qingyu-timestamp": headers["x-qingyu-timestamp"] })).toBe(false);
    // A fetch Headers object works as well as node:http's.
    expect(verifyWebhook(SECRET, body, new Headers(headers as Record<string, string>))).toBe(true);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
  });

  it("POSTs the documented JSON body and headers, with traceparent as a header only", async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    const { handler } = await setUp({ endpoints: [{ url: receiver.url, secret: SECRET, headers: { authorization: "Bearer r-token" } }] });
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const event = runtimeEvent({ type: "ERROR_OCCURRED", traceparent, remote: true, sessionId: undefined, data: { code: "INTERNAL", n: 1 } });
    const sentFrom = Math.floor(Date.now() / 1000);
    await handler.handle(event);
    await handler.dispose!();
    const sentBy = Math.ceil(Date.now() / 1000);

    expect(receiver.requests).toHaveLength(1);
    const { body, headers } = receiver.requests[0]!;
    expect(JSON.parse(body)).toEqual({
      id: event.id,
      type: "ERROR_OCCURRED",
      time: "2026-01-02T03:04:05.678Z",
      agentId: "support",
      sessionId: null,
      userId: "alice",
      data: { code: "INTERNAL", n: 1 },
    });
    expect(headers).toMatchObject({
      "content-type": "application/json",
      "user-agent": "qingyu-webhooks/1",
      "x-qingyu-event-id": event.id,
      "x-qingyu-event-type": "ERROR_OCCURRED",
      traceparent,
      authorization: "Bearer r-token",
    });
    // The time of sending, in seconds: between the handle call and the end of dispose, however long that took.
    const ts = Number(headers["x-qingyu-timestamp"]);
    expect(ts).toBeGreaterThanOrEqual(sentFrom);
    expect(ts).toBeLessThanOrEqual(sentBy);
  });

  it("sends no traceparent header when the event has none", async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    const { handler } = await setUp({ endpoints: [{ url: receiver.url, secret: SECRET }] });
    await handler.handle(runtimeEvent());
    await waitFor(() => receiver.requests.length === 1);
    await handler.dispose!();
    expect(receiver.requests[0]!.headers.traceparent).toBeUndefined();
  });

  it("signs with the secret named by secretEnv, read from the host's environment", async () => {
    const envSecret = "from-the-environment-0123456789abcdef";
    const receiver = await startReceiver((_n, req) => (verifyWebhook(envSecret, req.body, req.headers) ? 204 : 401));
    receivers.push(receiver);
    const { handler, lines } = await setUp({ endpoints: [{ url: receiver.url, secretEnv: "HOOK_SECRET" }] }, { HOOK_SECRET: envSecret });
    await handler.handle(runtimeEvent());
    await handler.dispose!();
    expect(receiver.requests).toHaveLength(1);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);

    await expect(setUp({ endpoints: [{ url: receiver.url, secretEnv: "HOOK_SECRET" }] }, {})).rejects.toThrow(/HOOK_SECRET is not set/);
  });
});

describe("webhooks options", () => {
  const parse = (options: unknown) => parseOptions(webhooks, options);

  it("requires a signing secret, exactly one way, and at least 32 characters", async () => {
    expect((await parse({ endpoints: [{ url: "https://example.com/h" }] })).success).toBe(false);
    expect((await parse({ endpoints: [{ url: "https://example.com/h", secret: SECRET, secretEnv: "X" }] })).success).toBe(false);
    expect((await parse({ endpoints: [{ url: "https://example.com/h", secret: "short" }] })).success).toBe(false);
    expect((await parse({ endpoints: [{ url: "https://example.com/h", secret: SECRET }] })).success).toBe(true);
  });

  it("refuses no endpoints, non-http URLs, unknown keys and headers the plugin sets itself", async () => {
    expect((await parse({ endpoints: [] })).success).toBe(false);
    expect((await parse({ endpoints: [{ url: "ftp://example.com/h", secret: SECRET }] })).success).toBe(false);
    expect((await parse({ endpoints: [{ url: "https://example.com/h", secret: SECRET }], retries: 3 })).success).toBe(false);
    expect((await parse({ endpoints: [{ url: "https://example.com/h", secret: SECRET, headers: { "X-Qingyu-Signature": "v1=0" } }] })).success).toBe(false);
    expect((await parse({ endpoints: [{ url: "https://example.com/h", secret: SECRET, types: ["NOT_A_TYPE"] }] })).success).toBe(false);
  });

  it("defaults as documented", async () => {
    const parsed = await parse({ endpoints: [{ url: "https://example.com/h", secret: SECRET }] });
    expect(parsed.success && parsed.data).toMatchObject({
      timeoutMs: 5000,
      maxAttempts: 5,
      baseDelayMs: 500,
      maxDelayMs: 30000,
      maxQueue: 10000,
      concurrency: 4,
      drainTimeoutMs: 5000,
    });
  });
});
