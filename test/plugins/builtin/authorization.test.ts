import { Code, type Principal } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import authorization from "../../../src/plugins/builtin/authorization.ts";
import { agentContext, collect, setUpPlugin, terminal } from "../../support/plugin-context.ts";
import { rejection } from "../../support/rejection.ts";

const bob: Principal = { id: "bob", admin: false, roles: ["writers"], method: "api-key" };
const root: Principal = { id: "root", admin: true, roles: [], method: "api-key" };

const rules = [
  { principals: ["bob"], agents: ["echo"] },
  { principals: ["role:writers"], agents: ["gpt-*"] },
  { principals: ["*"], agents: ["public"] },
  { principals: ["carol"], agents: ["*"] },
];

/** Whether the call reached the agent; a refusal comes back as its code and message. */
async function decide(options: unknown, principal: Principal | undefined, agentId: string): Promise<true | { code: Code; message: string }> {
  const mw = await setUpPlugin(authorization, options);
  const t = terminal();
  // process refuses synchronously, as validation does; the pipeline treats both alike.
  const outcome = Promise.resolve().then(() => collect(mw.process(agentContext({ principal, agentId }), t.next)));
  const ran = await outcome.then(
    () => true,
    () => false,
  );
  expect(t.calls).toBe(ran ? 1 : 0);
  if (ran) return true;
  const err = await rejection(outcome);
  return { code: err.code, message: err.rawMessage };
}

const denied = (id: string, agent: string) => ({ code: Code.PermissionDenied, message: `principal "${id}" may not call agent "${agent}"` });

describe("authorization", () => {
  it("allows by principal id", async () => {
    expect(await decide({ rules }, bob, "echo")).toBe(true);
  });

  it("allows by role, and refuses a principal without it", async () => {
    expect(await decide({ rules }, bob, "gpt-4o")).toBe(true);
    const dan: Principal = { id: "dan", admin: false, roles: ["readers"], method: "jwt" };
    expect(await decide({ rules }, dan, "gpt-4o")).toEqual(denied("dan", "gpt-4o"));
  });

  it("matches agent globs by prefix only", async () => {
    expect(await decide({ rules }, bob, "gpt-")).toBe(true);
    expect(await decide({ rules }, bob, "my-gpt-4o")).toEqual(denied("bob", "my-gpt-4o"));
  });

  it('"*" matches any principal, and any agent', async () => {
    const eve: Principal = { id: "eve", admin: false, roles: [], method: "jwt" };
    expect(await decide({ rules }, eve, "public")).toBe(true);
    expect(await decide({ rules }, { ...eve, id: "carol" }, "anything-at-all")).toBe(true);
  });

  it("denies when no rule matches both principal and agent", async () => {
    expect(await decide({ rules }, bob, "secret-agent")).toEqual(denied("bob", "secret-agent"));
  });

  it("denies everyone but admins with no rules", async () => {
    expect(await decide({}, bob, "echo")).toEqual(denied("bob", "echo"));
  });

  it("lets an admin through without a rule", async () => {
    expect(await decide({ rules }, root, "secret-agent")).toBe(true);
  });

  it('allows unmatched calls with default "allow"', async () => {
    expect(await decide({ rules, default: "allow" }, bob, "secret-agent")).toBe(true);
  });

  it("refuses a call without a principal even with default allow", async () => {
    expect(await decide({ default: "allow" }, undefined, "echo")).toEqual({
      code: Code.Unauthenticated,
      message: "no principal: put auth before authorization in the pipeline",
    });
  });

  it("refuses a glob with a star anywhere but the end", async () => {
    await expect(setUpPlugin(authorization, { rules: [{ principals: ["*"], agents: ["gpt-*-mini"] }] })).rejects.toThrow(/trailing/);
  });
});
