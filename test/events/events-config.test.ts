import { describe, expect, it } from "vitest";
import { ConfigSchema } from "../../src/config/schema.ts";

describe("config: events bounds", () => {
  it("defaults: events of 4 KiB at most; a subscriber 1,000 events or 1 MiB behind is dropped", () => {
    const { events } = ConfigSchema.parse({});
    expect(events).toMatchObject({ maxEventBytes: 4096, subscriberMaxEvents: 1000, subscriberMaxBytes: 1_048_576 });
  });

  it("refuses a subscriber byte bound below the event bound, and an event bound below 4 KiB", () => {
    const small = ConfigSchema.safeParse({ events: { maxEventBytes: 65_536, subscriberMaxBytes: 8192 } });
    expect(small.success).toBe(false);
    expect(JSON.stringify(small.error?.issues)).toContain("must be at least maxEventBytes");
    expect(ConfigSchema.safeParse({ events: { maxEventBytes: 1024 } }).success).toBe(false);
  });
});
