import { afterEach, describe, expect, it } from "vitest";
import { verifyWebhook } from "../../../../src/plugins/builtin/webhooks/plugin.ts";
import { SECRET, runtimeEvent, setUp, startReceiver, undeliverable, waitFor, type Receiver } from "./helpers.ts";
import { settlesBefore } from "../../../support/settles-before.ts";

const receivers: Receiver[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
});

async function receiver(answer?: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const r = await startReceiver(answer);
  receivers.push(r);
  return r;
}

// Small backoffs keep the tests fast; the behaviour is the same as with the defaults.
const fast = { baseDelayMs: 5, maxDelayMs: 20 };

describe("webhook delivery", () => {
  it("retries 500s until a 200, re-signing each attempt, then sends no more", async () => {
    const r = await receiver((n) => (n < 2 ? 500 : 200));
    const { handler, lines } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], ...fast });
    const event = runtimeEvent();
    await handler.handle(event);
    await waitFor(() => r.requests.length >= 3);
    await handler.dispose!();
    await new Promise((resolve) => setTimeout(resolve, 100));

    expect(r.requests).toHaveLength(3);
    for (const req of r.requests) {
      expect(req.headers["x-qingyu-event-id"]).toBe(event.id);
      expect(JSON.parse(req.body).id).toBe(event.id);
      expect(verifyWebhook(SECRET, req.body, req.headers)).toBe(true);
    }
    expect(undeliverable(lines)).toEqual([]);
    // The failures were reported (throttled), not silent.
    expect(lines.some((l) => l.level === 40 && l.msg === "webhook delivery failed; will retry" && l.webhook === r.url)).toBe(true);
  });

  it("does not retry a 400, and logs the event as undeliverable", async () => {
    const r = await receiver(() => 400);
    const { handler, lines } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], ...fast });
    const event = runtimeEvent();
    await handler.handle(event);
    await waitFor(() => undeliverable(lines).length === 1);
    await handler.dispose!();

    expect(r.requests).toHaveLength(1);
    expect(undeliverable(lines)[0]).toMatchObject({ level: 50, webhook: r.url, status: 400, attempts: 1, event: { id: event.id, data: event.data } });
  });

  it("gives up after maxAttempts, logging the whole event and the endpoint", async () => {
    const r = await receiver(() => 503);
    const { handler, lines } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], ...fast, maxAttempts: 3 });
    const event = runtimeEvent({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
    await handler.handle(event);
    await waitFor(() => undeliverable(lines).length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await handler.dispose!();

    expect(r.requests).toHaveLength(3);
    expect(undeliverable(lines)).toHaveLength(1);
    expect(undeliverable(lines)[0]).toMatchObject({
      level: 50,
      webhook: r.url,
      attempts: 3,
      status: 503,
      traceparent: event.traceparent,
      event: JSON.parse(r.requests[0]!.body),
    });
  });

  it("honours Retry-After on a 429, re-signing with a fresh timestamp", async () => {
    const r = await receiver((n) => (n === 0 ? { status: 429, headers: { "retry-after": "1" } } : 200));
    const { handler, lines } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], baseDelayMs: 5, maxDelayMs: 5_000 });
    await handler.handle(runtimeEvent());
    await waitFor(() => r.requests.length === 2);
    await handler.dispose!();

    // The wait chosen was Retry-After's second (not the 5 ms backoff nor the 5 s cap), and the retry did not
    // come before it: a lower bound, which a busy machine can only make hold by more.
    expect(lines.find((l) => l.msg === "webhook delivery failed; will retry")).toMatchObject({ retryInMs: 1000 });
    expect(r.requests[1]!.at - r.requests[0]!.at).toBeGreaterThanOrEqual(950);
    const [first, second] = r.requests.map((req) => Number(req.headers["x-qingyu-timestamp"]));
    expect(second).toBeGreaterThan(first!);
    expect(verifyWebhook(SECRET, r.requests[1]!.body, r.requests[1]!.headers)).toBe(true);
    expect(undeliverable(lines)).toEqual([]);
  });

  it("times out a receiver that never answers and retries", async () => {
    const r = await receiver((n) => (n === 0 ? "hang" : 200));
    const { handler, lines } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], ...fast, timeoutMs: 200 });
    const started = performance.now();
    await handler.handle(runtimeEvent());
    await waitFor(() => r.requests.length === 2);
    await handler.dispose!();

    expect(r.requests[1]!.at - started).toBeGreaterThanOrEqual(190);
    expect(undeliverable(lines)).toEqual([]);
    expect(lines.find((l) => l.msg === "webhook delivery failed; will retry")?.err).toMatch(/timed out after 200 ms/);
  });

  it("retries when the receiver is unreachable, then logs the event", async () => {
    const r = await receiver();
    const url = r.url;
    await r.close();
    const { handler, lines } = await setUp({ endpoints: [{ url, secret: SECRET }], ...fast, maxAttempts: 2 });
    const event = runtimeEvent();
    await handler.handle(event);
    await waitFor(() => undeliverable(lines).length === 1);
    await handler.dispose!();
    expect(undeliverable(lines)[0]).toMatchObject({ webhook: url, attempts: 2, event: { id: event.id } });
  });

  it("drops the oldest waiting delivery beyond maxQueue and logs it at error level", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const r = await receiver(async () => (await gate, 200));
    const { handler, lines } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], ...fast, concurrency: 1, maxQueue: 2 });
    const events = [1, 2, 3, 4].map((n) => runtimeEvent({ data: { n } }));
    // The first goes out at once; 2 and 3 wait; 4 pushes 2, the oldest waiting, out.
    for (const event of events) void handler.handle(event);
    expect(undeliverable(lines)).toHaveLength(1);
    expect(undeliverable(lines)[0]).toMatchObject({ level: 50, webhook: r.url, attempts: 0, event: { id: events[1]!.id, data: { n: 2 } } });
    expect(undeliverable(lines)[0]!.reason).toMatch(/queue full/);

    release();
    await handler.dispose!();
    expect(r.requests.map((req) => JSON.parse(req.body).data.n)).toEqual([1, 3, 4]);
    expect(undeliverable(lines)).toHaveLength(1);
  });

  it("runs up to `concurrency` POSTs at once per endpoint", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const r = await receiver(async () => (await gate, 200));
    const { handler } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], concurrency: 2 });
    for (let i = 0; i < 3; i++) void handler.handle(runtimeEvent());
    await waitFor(() => r.requests.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(r.requests).toHaveLength(2);
    release();
    await handler.dispose!();
    expect(r.requests).toHaveLength(3);
  });

  it("sends each endpoint only the types it asked for", async () => {
    const errorsOnly = await receiver();
    const everything = await receiver();
    const { handler } = await setUp({
      endpoints: [
        { url: errorsOnly.url, secret: SECRET, types: ["ERROR_OCCURRED"] },
        { url: everything.url, secret: SECRET },
      ],
    });
    expect(handler.types).toBe("any");
    void handler.handle(runtimeEvent({ type: "AGENT_STARTED" }));
    void handler.handle(runtimeEvent({ type: "ERROR_OCCURRED" }));
    await handler.dispose!();
    expect(errorsOnly.requests.map((req) => req.headers["x-qingyu-event-type"])).toEqual(["ERROR_OCCURRED"]);
    expect(everything.requests.map((req) => req.headers["x-qingyu-event-type"]).sort()).toEqual(["AGENT_STARTED", "ERROR_OCCURRED"]);

    const typed = await setUp({
      endpoints: [
        { url: errorsOnly.url, secret: SECRET, types: ["ERROR_OCCURRED"] },
        { url: everything.url, secret: SECRET, types: ["SESSION_CREATED", "ERROR_OCCURRED"] },
      ],
    });
    expect(typed.handler.types).toEqual(["ERROR_OCCURRED", "SESSION_CREATED"]);
    await typed.handler.dispose!();
  });

  it("returns from handle at once, even when the receiver hangs", async () => {
    const r = await receiver(() => "hang");
    const { handler } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], drainTimeoutMs: 50 });
    const result = handler.handle(runtimeEvent());
    // Nothing to wait for, and handle came back before the POST even reached the receiver.
    expect(result).toBeUndefined();
    expect(r.requests).toHaveLength(0);
    await waitFor(() => r.requests.length === 1);
    await handler.dispose!();
  });
});

describe("webhooks dispose", () => {
  it("flushes pending deliveries before it returns", async () => {
    const r = await receiver(async () => (await new Promise((resolve) => setTimeout(resolve, 30)), 200));
    const { handler, lines } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], concurrency: 1 });
    const events = [1, 2, 3, 4, 5].map((n) => runtimeEvent({ data: { n } }));
    for (const event of events) void handler.handle(event);
    expect(r.requests.length).toBeLessThan(5);
    // It returns when the queue is empty, before drainTimeoutMs (5 s) could end the wait.
    expect(await settlesBefore(handler.dispose!(), 5_000)).toBe(true);
    expect(r.requests.map((req) => JSON.parse(req.body).data.n)).toEqual([1, 2, 3, 4, 5]);
    expect(undeliverable(lines)).toEqual([]);
  });

  it("logs what it could not deliver within drainTimeoutMs, and events that arrive after it", async () => {
    const r = await receiver(() => "hang");
    // A POST timeout far past the test's patience, so only the cancel at dispose can end the hanging POST.
    const { handler, lines } = await setUp({ endpoints: [{ url: r.url, secret: SECRET }], concurrency: 1, drainTimeoutMs: 200, timeoutMs: 60_000 });
    const sent = runtimeEvent();
    const queued = runtimeEvent();
    void handler.handle(sent);
    void handler.handle(queued);
    await waitFor(() => r.requests.length === 1);
    // It gives up at drainTimeoutMs (200 ms), long before the POST's own timeout (60 s) would end it.
    expect(await settlesBefore(handler.dispose!(), 10_000)).toBe(true);

    const logged = undeliverable(lines);
    expect(logged.map((l) => l.event.id).sort()).toEqual([sent.id, queued.id].sort());
    expect(logged.find((l) => l.event.id === sent.id)!.reason).toMatch(/while sending/);
    expect(logged.find((l) => l.event.id === queued.id)!.reason).toMatch(/before delivery/);
    // The POST in flight was cancelled, not left to its 60 s timeout.
    await waitFor(() => r.abandoned() === 1);

    const late = runtimeEvent();
    void handler.handle(late);
    expect(undeliverable(lines).at(-1)).toMatchObject({ level: 50, reason: expect.stringMatching(/closed/), event: { id: late.id } });
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Nothing was sent after dispose, and the hanging POST was not logged twice.
    expect(r.requests).toHaveLength(1);
    expect(undeliverable(lines)).toHaveLength(3);
  });
});
