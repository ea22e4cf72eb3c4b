import { Code, type EventType, reasonOf, type RuntimeEvent } from "@qingyu/plugin-api";
import { afterEach, describe, it, expect } from "vitest";
import pino from "pino";
import { SessionManager, type SessionPolicy } from "../../src/sessions/manager.ts";
import { MemorySessionStore } from "../../src/sessions/memory-store.ts";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import type { SessionRecord } from "../../src/sessions/types.ts";
import { rejection } from "../support/rejection.ts";
import { messageChars } from "../../src/sessions/messages.ts";
import { toolTurn } from "./store-tool-messages-contract.ts";

const basePolicy: SessionPolicy = {
  historyTokens: 0,
  getMessagesLimit: 200,
  maxCheckpointBytes: 1024,
  checkpointsKept: 100,
  ttlSeconds: 3600,
  maxTtlSeconds: 7200,
  historyMessages: 3,
  defaultPageSize: 2,
  maxPageSize: 5,
};

const stores: MemorySessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function setup(policy: Partial<SessionPolicy> = {}, now?: () => number) {
  const store = new MemorySessionStore(60_000, now);
  stores.push(store);
  const events = new MemoryEventBus(pino({ level: "silent" }));
  return { store, events, manager: new SessionManager(store, events, { ...basePolicy, ...policy }) };
}

/** The next event of `type` the bus delivers. */
function nextEvent(bus: MemoryEventBus, type: EventType): Promise<RuntimeEvent> {
  return new Promise((resolve) => {
    const off = bus.subscribe([type], (event) => {
      off();
      resolve(event);
    });
  });
}

describe("SessionManager: create", () => {
  it("creates a session owned by the user with the default TTL when none is given", async () => {
    const t = 1_700_000_000_000;
    const { manager } = setup({}, () => t);
    const s = await manager.create("alice", "helper", { k: "v" }, 0);
    expect(s).toMatchObject({ userId: "alice", agentId: "helper", metadata: { k: "v" }, version: 0 });
    expect(s.expireTime.getTime() - s.createTime.getTime()).toBe(3600 * 1000);
  });

  it("uses a requested TTL up to the maximum", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 7200);
    expect(s.expireTime.getTime() - s.createTime.getTime()).toBe(7200 * 1000);
  });

  it("rejects a TTL above the maximum with INVALID_ARGUMENT naming ttl_seconds", async () => {
    const { manager, store } = setup();
    const err = await rejection(manager.create("alice", "helper", {}, 7201));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("ttl_seconds");
    expect((await store.list("alice", 10, "")).items).toEqual([]);
  });

  it("rejects a missing user_id with INVALID_ARGUMENT naming user_id", async () => {
    const { manager } = setup();
    const err = await rejection(manager.create("", "helper", {}, 0));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("user_id");
  });

  it("publishes SESSION_CREATED with the session, user and agent", async () => {
    const { manager, events } = setup();
    const created = nextEvent(events, "SESSION_CREATED");
    const s = await manager.create("alice", "helper", {}, 0);
    expect(await created).toMatchObject({ type: "SESSION_CREATED", sessionId: s.id, userId: "alice", agentId: "helper" });
  });
});

describe("SessionManager: create bounds", () => {
  const refusedMetadata = async (metadata: Record<string, string>, policy: Partial<SessionPolicy> = {}) => {
    const { manager, store } = setup(policy);
    const err = await rejection(manager.create("alice", "helper", metadata, 0));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^metadata: /);
    // Checked before the store is touched.
    expect((await store.list("alice", 10, "")).items).toEqual([]);
    return err.rawMessage;
  };
  const entries = (n: number, value = "v") => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, value]));

  it("takes metadata up to every default bound: 64 entries, 128-byte keys, 4,096-byte values, 16 KiB in all", async () => {
    const { manager } = setup();
    await manager.create("alice", "helper", entries(64), 0);
    await manager.create("alice", "helper", { ["k".repeat(128)]: "v".repeat(4096) }, 0);
    await manager.create("alice", "helper", entries(4, "v".repeat(4094)), 0);
  });

  it("refuses metadata past a bound with INVALID_ARGUMENT naming metadata, the bound and the key (quoted, cut)", async () => {
    expect(await refusedMetadata(entries(65))).toBe("metadata: has 65 entries; the limit is 64");
    expect(await refusedMetadata(entries(200_000))).toBe("metadata: has 200000 entries; the limit is 64");
    const longKey = `line\n${"é".repeat(100)}`;
    const keyMessage = await refusedMetadata({ [longKey]: "v" });
    expect(keyMessage).toContain(`is ${Buffer.byteLength(longKey)} bytes; the limit is 128`);
    expect(keyMessage).toContain("(105 characters)"); // quoted, cut to 64 characters
    expect(keyMessage).not.toContain("\n"); // JSON-quoted: no raw newline in the message
    expect(await refusedMetadata({ big: "x".repeat(3_900_000) })).toBe('metadata: value of key "big" is 3900000 bytes; the limit is 4096');
    expect(await refusedMetadata(entries(5, "v".repeat(4000)))).toMatch(/^metadata: is 200\d\d bytes of keys and values; the limit is 16384$/);
  });

  it("refuses NUL in a metadata key or value (PostgreSQL cannot keep it) on every store alike", async () => {
    expect(await refusedMetadata({ "a\u0000b": "v" })).toContain("NUL");
    expect(await refusedMetadata({ a: "v\u0000" })).toContain("NUL");
  });

  it("takes its metadata bounds from the policy", async () => {
    expect(await refusedMetadata({ a: "1", b: "2" }, { maxMetadataEntries: 1 })).toBe("metadata: has 2 entries; the limit is 1");
    expect(await refusedMetadata({ abc: "1" }, { maxMetadataKeyBytes: 2 })).toContain("the limit is 2");
    expect(await refusedMetadata({ a: "123" }, { maxMetadataValueBytes: 2 })).toContain("the limit is 2");
    expect(await refusedMetadata({ a: "12", b: "12" }, { maxMetadataBytes: 5 })).toContain("the limit is 5");
  });

  it("refuses a create past maxSessionsPerUser with RESOURCE_EXHAUSTED, and publishes nothing for it", async () => {
    const { manager, events } = setup({ maxSessionsPerUser: 2 });
    const seen: string[] = [];
    events.subscribe(["SESSION_CREATED"], (e) => void seen.push(e.sessionId!));
    await manager.create("alice", "helper", {}, 0);
    await manager.create("alice", "helper", {}, 0);
    const err = await rejection(manager.create("alice", "helper", {}, 0));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toContain('user "alice" already has 2 live sessions');
    await manager.create("bob", "helper", {}, 0);
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toHaveLength(3);
  });

  it("caps live sessions per user at 1000 by default", async () => {
    const { manager } = setup();
    for (let i = 0; i < 1000; i++) await manager.create("alice", "helper", {}, 0);
    expect((await rejection(manager.create("alice", "helper", {}, 0))).code).toBe(Code.ResourceExhausted);
  });
});

describe("SessionManager: get and ownership", () => {
  it("returns the owner's session", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    expect((await manager.get(s.id, "alice")).id).toBe(s.id);
  });

  it("another user's GetSession is PERMISSION_DENIED", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    const err = await rejection(manager.get(s.id, "bob"));
    expect(err.code).toBe(Code.PermissionDenied);
  });

  it("an unknown session is NOT_FOUND, an empty id INVALID_ARGUMENT naming session_id", async () => {
    const { manager } = setup();
    expect((await rejection(manager.get("ghost", "alice"))).code).toBe(Code.NotFound);
    const err = await rejection(manager.get("", "alice"));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("session_id");
  });

  it("another user cannot delete, checkpoint or read checkpoints of the session", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    await manager.saveCheckpoint(s.id, "alice", { x: 1 }, undefined);
    expect((await rejection(manager.delete(s.id, "bob"))).code).toBe(Code.PermissionDenied);
    expect((await rejection(manager.saveCheckpoint(s.id, "bob", { x: 2 }, undefined))).code).toBe(Code.PermissionDenied);
    expect((await rejection(manager.getCheckpoint(s.id, "bob", ""))).code).toBe(Code.PermissionDenied);
    expect((await rejection(manager.listCheckpoints(s.id, "bob", 0, ""))).code).toBe(Code.PermissionDenied);
    // Nothing changed.
    const still = await manager.get(s.id, "alice");
    expect(still.version).toBe(1);
  });
});

describe("SessionManager: list", () => {
  it("shows only the user's own sessions", async () => {
    const { manager } = setup({ defaultPageSize: 10 });
    const mine = await manager.create("alice", "helper", {}, 0);
    await manager.create("bob", "helper", {}, 0);
    const page = await manager.list("alice", 0, "");
    expect(page.items.map((s) => s.id)).toEqual([mine.id]);
  });

  it("rejects a missing user_id", async () => {
    const { manager } = setup();
    const err = await rejection(manager.list("", 10, ""));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("user_id");
  });

  it("uses the default page size for 0, caps at the maximum, rejects a negative size", async () => {
    const { manager } = setup();
    for (let i = 0; i < 8; i++) await manager.create("alice", "helper", {}, 0);
    expect((await manager.list("alice", 0, "")).items).toHaveLength(2);
    expect((await manager.list("alice", 3, "")).items).toHaveLength(3);
    const capped = await manager.list("alice", 1000, "");
    expect(capped.items).toHaveLength(5);
    expect(capped.nextPageToken).not.toBe("");
    const rest = await manager.list("alice", 1000, capped.nextPageToken);
    expect(rest.items).toHaveLength(3);
    expect(rest.nextPageToken).toBe("");
    const err = await rejection(manager.list("alice", -1, ""));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("page_size");
  });

  it("caps checkpoint listings at the maximum page size too", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    for (let i = 0; i < 7; i++) await manager.saveCheckpoint(s.id, "alice", { i }, undefined);
    expect((await manager.listCheckpoints(s.id, "alice", 0, "")).items).toHaveLength(2);
    expect((await manager.listCheckpoints(s.id, "alice", 100, "")).items).toHaveLength(5);
  });
});

describe("SessionManager: delete", () => {
  it("deletes the session and publishes SESSION_DELETED", async () => {
    const { manager, events } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    const deleted = nextEvent(events, "SESSION_DELETED");
    await manager.delete(s.id, "alice");
    expect(await deleted).toMatchObject({ type: "SESSION_DELETED", sessionId: s.id, userId: "alice", agentId: "helper" });
    expect((await rejection(manager.get(s.id, "alice"))).code).toBe(Code.NotFound);
    expect((await rejection(manager.delete(s.id, "alice"))).code).toBe(Code.NotFound);
  });
});

describe("SessionManager: checkpoints", () => {
  it("refuses NUL in checkpoint data but keeps a literal backslash-u0000 (a Windows path, an escaped string) as written", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    expect((await rejection(manager.saveCheckpoint(s.id, "alice", { note: "a\u0000b" }, undefined))).code).toBe(Code.InvalidArgument);
    const literal = { path: "C:\\u0000\\x", escaped: "\\\\u0000" };
    const cp = await manager.saveCheckpoint(s.id, "alice", literal, undefined);
    expect((await manager.getCheckpoint(s.id, "alice", cp.id)).data).toEqual(literal);
  });

  it("saves a checkpoint and publishes CHECKPOINT_SAVED with its id and version", async () => {
    const { manager, events } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    const saved = nextEvent(events, "CHECKPOINT_SAVED");
    const cp = await manager.saveCheckpoint(s.id, "alice", { step: 1 }, undefined);
    expect(await saved).toMatchObject({
      type: "CHECKPOINT_SAVED",
      sessionId: s.id,
      userId: "alice",
      agentId: "helper",
      data: { checkpointId: cp.id, version: 1 },
    });
    expect(await manager.getCheckpoint(s.id, "alice", "")).toEqual(cp);
  });

  it("a stale expected version is ABORTED; a negative one INVALID_ARGUMENT", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    await manager.saveCheckpoint(s.id, "alice", { step: 1 }, undefined);
    expect((await rejection(manager.saveCheckpoint(s.id, "alice", { step: 2 }, 5))).code).toBe(Code.Aborted);
    const err = await rejection(manager.saveCheckpoint(s.id, "alice", { step: 2 }, -1));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(reasonOf(err)).toEqual({ reason: "INVALID_FIELD", metadata: { field: "expected_version" } });
  });

  it("getCheckpoint is NOT_FOUND for a session without checkpoints or an unknown id", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    expect((await rejection(manager.getCheckpoint(s.id, "alice", ""))).code).toBe(Code.NotFound);
    await manager.saveCheckpoint(s.id, "alice", {}, undefined);
    const err = await rejection(manager.getCheckpoint(s.id, "alice", "nope"));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain("nope");
  });
});

describe("SessionManager: history", () => {
  function withMessages(n: number): SessionRecord {
    return {
      id: "s",
      userId: "u",
      agentId: "a",
      createTime: new Date(0),
      updateTime: new Date(0),
      expireTime: new Date(0),
      metadata: {},
      version: n,
      messageCount: n,
      messages: Array.from({ length: n }, (_, i) => ({ role: i % 2 ? ("assistant" as const) : ("user" as const), content: `m${i}` })),
    };
  }

  it("recent() takes the last historyMessages messages, in order", () => {
    const { manager } = setup({ historyMessages: 3 });
    expect(manager.recent(withMessages(5)).map((m) => m.content)).toEqual(["m2", "m3", "m4"]);
    expect(manager.recent(withMessages(2)).map((m) => m.content)).toEqual(["m0", "m1"]);
    expect(manager.recent(withMessages(0))).toEqual([]);
  });

  it("recent() keeps, newest first, only the messages that fit historyTokens, from a user message on", () => {
    const { manager } = setup({ historyMessages: 10, historyTokens: 4 });
    // Each "mN" is 2 characters, 1 token: the last four fit, a fifth would not.
    expect(manager.recent(withMessages(6)).map((m) => m.content)).toEqual(["m2", "m3", "m4", "m5"]);
    // m3..m6 fit, but m3 is an answer whose question (m2) did not: the window starts at m4.
    expect(manager.recent(withMessages(7)).map((m) => m.content)).toEqual(["m4", "m5", "m6"]);
    const long: SessionRecord = {
      ...withMessages(3),
      messages: [
        { role: "user", content: "x".repeat(40) },
        { role: "assistant", content: "ok" },
        { role: "user", content: "go" },
      ],
    };
    // The older message alone is over budget: it is dropped, not cut, and so is the answer that lost its question.
    expect(manager.recent(long).map((m) => m.content)).toEqual(["go"]);
  });

  it("refuses a checkpoint larger than maxCheckpointBytes with INVALID_ARGUMENT naming data", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    const err = await rejection(manager.saveCheckpoint(s.id, "alice", { blob: "x".repeat(2000) }, undefined));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/data.*limit is 1024/);
    expect((await manager.listCheckpoints(s.id, "alice", 10, "")).items).toEqual([]);
  });

  it("refuses a checkpoint holding NUL (no store can keep it the same) and stores NUL in messages as U+FFFD", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    const err = await rejection(manager.saveCheckpoint(s.id, "alice", { text: "a\u0000b" }, undefined));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("NUL");
    await manager.appendTurn(s.id, [{ role: "user", content: "x\u0000y" }]);
    expect((await manager.read(s.id, "alice")).messages[0]!.content).toBe("x\uFFFDy");
  });

  it("keeps only the latest checkpointsKept checkpoints", async () => {
    const { manager } = setup({ checkpointsKept: 3 });
    const s = await manager.create("alice", "helper", {}, 0);
    for (let i = 0; i < 5; i++) await manager.saveCheckpoint(s.id, "alice", { i }, undefined);
    const kept = (await manager.listCheckpoints(s.id, "alice", 10, "")).items.map((c) => c.data.i);
    expect(kept).toEqual([4, 3, 2]);
  });

  it("recent() never starts with a tool result cut off from its call: a count that cuts a turn starts at the next user message", () => {
    const session = { ...withMessages(0), messages: [...toolTurn(0), ...toolTurn(1)], messageCount: 10 };
    // The latest 7 begin with turn 0's second tool result and answer.
    expect(setup({ historyMessages: 7 }).manager.recent(session)).toStrictEqual(toolTurn(1));
    expect(setup({ historyMessages: 5 }).manager.recent(session)).toStrictEqual(toolTurn(1));
    // Turn 1 without its question: nothing whole is left, so nothing is sent.
    expect(setup({ historyMessages: 3 }).manager.recent(session)).toStrictEqual([]);
    expect(setup({ historyMessages: 10 }).manager.recent(session)).toStrictEqual([...toolTurn(0), ...toolTurn(1)]);
  });

  it("recent() never starts with a tool result cut off from its call under historyTokens either, and counts tool calls' arguments", () => {
    const session = { ...withMessages(0), messages: [...toolTurn(0), ...toolTurn(1)], messageCount: 10 };
    const turnTokens = toolTurn(1).reduce((n, m) => n + Math.ceil(messageChars(m) / 4), 0);
    expect(setup({ historyMessages: 10, historyTokens: turnTokens }).manager.recent(session)).toStrictEqual(toolTurn(1));
    // A budget that reaches into turn 0's tool results but not its call.
    const toolsTokens = toolTurn(0)
      .slice(2)
      .reduce((n, m) => n + Math.ceil(messageChars(m) / 4), 0);
    expect(setup({ historyMessages: 10, historyTokens: turnTokens + toolsTokens }).manager.recent(session)).toStrictEqual(toolTurn(1));
    // One token short of turn 1: its question does not fit, and the rest is no whole turn.
    expect(setup({ historyMessages: 10, historyTokens: turnTokens - 1 }).manager.recent(session)).toStrictEqual([]);
  });

  it("stores NUL in tool call ids, names and arguments and in the answered id as U+FFFD, like content", async () => {
    const { manager } = setup();
    const s = await manager.create("alice", "helper", {}, 0);
    await manager.appendTurn(s.id, [
      { role: "assistant", content: "", toolCalls: [{ id: "c\u00001", name: "w\u0000x", arguments: '{"a":"\u0000"}' }] },
      { role: "tool", content: "r\u0000", toolCallId: "c\u00001" },
    ]);
    expect((await manager.read(s.id, "alice")).messages).toStrictEqual([
      { role: "assistant", content: "", toolCalls: [{ id: "c\uFFFD1", name: "w\uFFFDx", arguments: '{"a":"\uFFFD"}' }] },
      { role: "tool", content: "r\uFFFD", toolCallId: "c\uFFFD1" },
    ]);
  });

  it("recent() is empty when historyMessages is 0", () => {
    const { manager } = setup({ historyMessages: 0 });
    expect(manager.recent(withMessages(4))).toEqual([]);
  });

  it("appendTurn stores messages that recent() then returns", async () => {
    const { manager } = setup({ historyMessages: 2 });
    const s = await manager.create("alice", "helper", {}, 0);
    expect(
      await manager.appendTurn(s.id, [
        { role: "user", content: "q1" },
        { role: "assistant", content: "a1" },
      ]),
    ).toBe(1);
    await manager.appendTurn(s.id, [
      { role: "user", content: "q2" },
      { role: "assistant", content: "a2" },
    ]);
    const recent = manager.recent(await manager.forTurn(s.id));
    expect(recent).toEqual([
      { role: "user", content: "q2" },
      { role: "assistant", content: "a2" },
    ]);
  });
});
