import { Code, ConnectError, type Middleware } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { Admission } from "../../src/pipeline/admission.ts";

function counting(fail = false): { hook: Middleware; calls: () => number } {
  let calls = 0;
  const hook: Middleware = {
    name: "auth",
    process: (_ctx, next) => next(),
    admit(call) {
      calls++;
      if (fail) throw new ConnectError("no", Code.Unauthenticated);
      call.principal = { id: "alice", admin: false, roles: [], method: "api-key" };
    },
  };
  return { hook, calls: () => calls };
}

const call = () => ({ header: () => undefined, signal: new AbortController().signal });

describe("Admission", () => {
  it("admits a call once: the transport's check before decoding and the service's share one verification", async () => {
    const { hook, calls } = counting();
    const admission = new Admission([hook]);
    const c = call();
    expect((await admission.admit(c, "s", "m"))?.id).toBe("alice");
    expect((await admission.admit(c, "s", "m"))?.id).toBe("alice");
    expect(calls()).toBe(1);
    await admission.admit(call(), "s", "m");
    expect(calls()).toBe(2);
  });

  it("refuses the same call again with the same error, without running the hooks again", async () => {
    const { hook, calls } = counting(true);
    const admission = new Admission([hook]);
    const c = call();
    await expect(admission.admit(c, "s", "m")).rejects.toMatchObject({ code: Code.Unauthenticated });
    await expect(admission.admit(c, "s", "m")).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(calls()).toBe(1);
  });
});
