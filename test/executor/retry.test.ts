import { Code, ConnectError, ProviderError } from "@qingyu/plugin-api";
import { describe, it, expect } from "vitest";
import { backoffDelay, retryDelay, sleep, type RetryPolicy } from "../../src/executor/retry.ts";

const policy: RetryPolicy = { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 1000 };
const fixed = (value: number) => () => value;

const retryable = (retryAfterMs?: number) => new ProviderError("busy", Code.Unavailable, true, retryAfterMs);

describe("ProviderError", () => {
  it("is a ConnectError carrying its code, retryability and Retry-After", () => {
    const err = new ProviderError("rate limited", Code.ResourceExhausted, true, 250);
    expect(err instanceof ConnectError).toBe(true);
    expect(err instanceof ProviderError).toBe(true);
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toBe("rate limited");
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBe(250);
  });

  it("a plain ConnectError is not a ProviderError", () => {
    const plain = new ConnectError("busy", Code.Unavailable);
    expect(plain instanceof ProviderError).toBe(false);
    expect(new Error("x") instanceof ProviderError).toBe(false);
    expect((null as unknown) instanceof ProviderError).toBe(false);
  });

  it("keeps the cause", () => {
    const cause = new Error("socket hang up");
    expect(new ProviderError("down", Code.Unavailable, true, undefined, cause).cause).toBe(cause);
  });
});

describe("backoffDelay", () => {
  it("grows exponentially from baseDelayMs", () => {
    // random() = 1 gives the ceiling of each attempt's jitter window.
    const delays = [1, 2, 3, 4].map((attempt) => backoffDelay(attempt, policy, undefined, fixed(1)));
    expect(delays).toEqual([100, 200, 400, 800]);
  });

  it("is capped at maxDelayMs", () => {
    expect(backoffDelay(5, policy, undefined, fixed(1))).toBe(1000);
    expect(backoffDelay(20, policy, undefined, fixed(1))).toBe(1000);
    expect(backoffDelay(20, policy, undefined, fixed(0))).toBe(500);
  });

  it("uses equal jitter: between half the ceiling and the ceiling", () => {
    expect(backoffDelay(3, policy, undefined, fixed(0))).toBe(200);
    expect(backoffDelay(3, policy, undefined, fixed(0.5))).toBe(300);
    expect(backoffDelay(3, policy, undefined, fixed(0.999))).toBeCloseTo(399.8, 5);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(3, policy);
      expect(d).toBeGreaterThanOrEqual(200);
      expect(d).toBeLessThanOrEqual(400);
    }
  });

  it("treats Retry-After as a floor", () => {
    expect(backoffDelay(1, policy, 700, fixed(0.5))).toBe(700);
    // A Retry-After below the backoff does not shorten it.
    expect(backoffDelay(4, policy, 10, fixed(0.5))).toBe(600);
    expect(backoffDelay(1, policy, 0, fixed(1))).toBe(100);
  });
});

describe("retryDelay", () => {
  const now = 1_000_000;

  it("gives the backoff for a retryable ProviderError", () => {
    expect(retryDelay(retryable(), 1, policy, undefined, now, fixed(1))).toBe(100);
    expect(retryDelay(retryable(), 2, policy, undefined, now, fixed(0))).toBe(100);
  });

  it("gives up on anything that is not a ProviderError", () => {
    expect(retryDelay(new ConnectError("busy", Code.Unavailable), 1, policy, undefined, now)).toBeUndefined();
    expect(retryDelay(new Error("boom"), 1, policy, undefined, now)).toBeUndefined();
    expect(retryDelay("string", 1, policy, undefined, now)).toBeUndefined();
  });

  it("gives up on a non-retryable ProviderError", () => {
    const err = new ProviderError("bad request", Code.InvalidArgument, false);
    expect(retryDelay(err, 1, policy, undefined, now)).toBeUndefined();
  });

  it("gives up after the last attempt", () => {
    expect(retryDelay(retryable(), 4, policy, undefined, now)).toBeDefined();
    expect(retryDelay(retryable(), 5, policy, undefined, now)).toBeUndefined();
    expect(retryDelay(retryable(), 1, { ...policy, maxAttempts: 1 }, undefined, now)).toBeUndefined();
  });

  it("honours Retry-After up to maxDelayMs, and gives up beyond it", () => {
    expect(retryDelay(retryable(1000), 1, policy, undefined, now, fixed(0))).toBe(1000);
    expect(retryDelay(retryable(1001), 1, policy, undefined, now, fixed(0))).toBeUndefined();
  });

  it("gives up when the wait would reach the deadline", () => {
    // Delay is 100 with random() = 1.
    expect(retryDelay(retryable(), 1, policy, now + 101, now, fixed(1))).toBe(100);
    expect(retryDelay(retryable(), 1, policy, now + 100, now, fixed(1))).toBeUndefined();
    expect(retryDelay(retryable(), 1, policy, now + 50, now, fixed(1))).toBeUndefined();
    // Retry-After counts towards the deadline too.
    expect(retryDelay(retryable(500), 1, policy, now + 400, now, fixed(0))).toBeUndefined();
  });
});

describe("sleep", () => {
  it("resolves after the delay", async () => {
    const start = Date.now();
    await sleep(20, new AbortController().signal);
    expect(Date.now() - start).toBeGreaterThanOrEqual(15);
  });

  it("rejects with the signal's ConnectError reason when aborted", async () => {
    const controller = new AbortController();
    const reason = new ConnectError("client went away", Code.Canceled);
    const pending = sleep(60_000, controller.signal);
    setTimeout(() => controller.abort(reason), 5);
    await expect(pending).rejects.toBe(reason);
  });

  it("rejects at once when the signal is already aborted", async () => {
    const reason = new ConnectError("deadline passed", Code.DeadlineExceeded);
    await expect(sleep(60_000, AbortSignal.abort(reason))).rejects.toBe(reason);
  });

  it("turns a reason that is not a ConnectError into CANCELLED", async () => {
    const controller = new AbortController();
    controller.abort("why not");
    const err = await sleep(60_000, controller.signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Canceled);
  });
});
