import { Code } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { failureDetail, storeUnavailable } from "../../src/clients/shared.ts";

/** What the driver rejects with when the store's port is closed. */
function refused(): Error {
  return Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6390"), { code: "ECONNREFUSED" });
}

describe("storeUnavailable", () => {
  it("tells the client only what is unavailable; the driver's message stays on the cause", () => {
    const err = storeUnavailable("session store", refused(), "redis");
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("session store unavailable");
    expect(err.message).not.toMatch(/127\.0\.0\.1|6390|ECONNREFUSED/);
    expect(failureDetail(err)).toBe("session store unavailable: connect ECONNREFUSED 127.0.0.1:6390");
  });

  it("names each address of an AggregateError in the detail", () => {
    const both = new AggregateError([refused(), Object.assign(new Error(""), { code: "ETIMEDOUT" })], "");
    expect(failureDetail(storeUnavailable("session store", both))).toBe("session store unavailable: connect ECONNREFUSED 127.0.0.1:6390; ETIMEDOUT");
  });
});
