import { Code, ConnectError, type Principal } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { callUser, eventAudience, eventUser, sessionOwner, turnUser } from "../../src/pipeline/acting.ts";

const bob: Principal = { id: "bob", admin: false, roles: [], method: "api-key" };
const root: Principal = { id: "root", admin: true, roles: [], method: "api-key" };
const noAuth = { guarded: false, principal: undefined };
const anonymous = { guarded: true, principal: undefined };
const asBob = { guarded: true, principal: bob };
const asRoot = { guarded: true, principal: root };

function code(fn: () => unknown): Code | "none" {
  try {
    fn();
    return "none";
  } catch (err) {
    if (err instanceof ConnectError) return err.code;
    throw err;
  }
}

// One table per rule: the same four callers on every RPC (sessions, runs, events).
describe("who a call acts as", () => {
  it("callUser: the principal; an admin may name anyone; an anonymous call acts as nobody and names no one", () => {
    expect([callUser(noAuth, "alice"), callUser(asBob, ""), callUser(asRoot, "alice"), callUser(anonymous, "")]).toEqual(["alice", "bob", "alice", ""]);
    expect([code(() => callUser(asBob, "alice")), code(() => callUser(anonymous, "bob"))]).toEqual([Code.PermissionDenied, Code.Unauthenticated]);
  });

  it("sessionOwner: one's own sessions; anyone's for an admin naming no one; none for an anonymous call", () => {
    expect([sessionOwner(asBob, "bob"), sessionOwner(asRoot, "root"), sessionOwner(asRoot, "alice"), sessionOwner(noAuth, "alice")]).toEqual([
      "bob",
      "",
      "alice",
      "alice",
    ]);
    expect(code(() => sessionOwner(anonymous, ""))).toBe(Code.Unauthenticated);
  });

  it("turnUser: a run naming no user (or an admin naming none) acts as the session's owner; others must own it", () => {
    const session = { id: "s", userId: "alice" };
    expect([turnUser(noAuth, "", "", session), turnUser(asRoot, "root", "", session), turnUser(noAuth, "alice", "alice", session)]).toEqual([
      "alice",
      "alice",
      "alice",
    ]);
    expect([code(() => turnUser(asBob, "bob", "", session)), code(() => turnUser(anonymous, "", "", session))]).toEqual([
      Code.PermissionDenied,
      Code.Unauthenticated,
    ]);
  });

  it("eventUser: an event is its principal's (an admin's, the user it acts for); nobody's when no principal vouched for it", () => {
    expect([eventUser(asBob, "bob"), eventUser(asRoot, "alice"), eventUser(asRoot, ""), eventUser(noAuth, "alice"), eventUser(anonymous, "alice")]).toEqual([
      "bob",
      "alice",
      "root",
      "alice",
      undefined,
    ]);
  });

  it("eventAudience: own events; an admin's choice; an anonymous subscriber only nobody's", () => {
    const sees = (f: (u: string | undefined) => boolean) => ["alice", "bob", undefined].filter((u) => f(u));
    expect(sees(eventAudience(asBob, "bob", ""))).toEqual(["bob"]);
    expect(sees(eventAudience(asRoot, "root", ""))).toEqual(["alice", "bob", undefined]);
    expect(sees(eventAudience(asRoot, "alice", "alice"))).toEqual(["alice"]);
    expect(sees(eventAudience(noAuth, "", ""))).toEqual(["alice", "bob", undefined]);
    expect(sees(eventAudience(anonymous, "", ""))).toEqual([undefined]);
  });
});
