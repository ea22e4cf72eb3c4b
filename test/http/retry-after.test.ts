import { describe, expect, it } from "vitest";
import { retryAfterMs } from "../../src/http/retry-after.ts";

const now = Date.parse("2026-12-04T12:00:00Z");
const h = (init: Record<string, string>) => new Headers(init);

describe("retryAfterMs", () => {
  it("reads retry-after-ms first, then Retry-After in seconds or as an HTTP date", () => {
    expect(retryAfterMs(h({ "retry-after-ms": "1500.4", "retry-after": "9" }), now)).toBe(1500);
    expect(retryAfterMs(h({ "retry-after": " 2 " }), now)).toBe(2000);
    expect(retryAfterMs(h({ "retry-after": "0.5" }), now)).toBe(500);
    expect(retryAfterMs(h({ "retry-after": "Fri, 04 Dec 2026 12:00:05 GMT" }), now)).toBe(5000);
  });

  it("a date already past is no wait; nothing readable is undefined", () => {
    expect(retryAfterMs(h({ "retry-after": "Fri, 04 Dec 2026 11:00:00 GMT" }), now)).toBe(0);
    const unreadable: Record<string, string>[] = [{}, { "retry-after": "soon" }, { "retry-after": "-3" }, { "retry-after-ms": "-1" }];
    for (const bad of unreadable) expect(retryAfterMs(h(bad), now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
  });
});
