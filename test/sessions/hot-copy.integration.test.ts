import { Redis } from "ioredis";
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { HotCopy } from "../../src/sessions/hot-copy.ts";
import type { SessionRecord } from "../../src/sessions/types.ts";
import { toolTurn } from "./store-tool-messages-contract.ts";
import { redisUrl } from "../support/services.ts";

const redis = new Redis(redisUrl());
const prefix = `qingyu:test:hot:${randomUUID()}:`;
const hot = new HotCopy(redis, prefix, 3);

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

function session(version: number, messages: number, ttlMs = 60_000): SessionRecord {
  const now = Date.now();
  return {
    id: randomUUID(),
    userId: "alice",
    agentId: "helper",
    metadata: { team: "a" },
    createTime: new Date(now - 1000),
    updateTime: new Date(now),
    expireTime: new Date(now + ttlMs),
    version,
    messageCount: messages,
    messages: Array.from({ length: messages }, (_, i) => ({ role: i % 2 ? ("assistant" as const) : ("user" as const), content: `m${i}` })),
  };
}

const head = (s: SessionRecord, version: number, messageCount: number) => ({
  version,
  updateTime: new Date(s.updateTime.getTime() + 5),
  expireTime: new Date(s.expireTime.getTime() + 5),
  messageCount,
});

describe("HotCopy: the tiered store's Redis copy", () => {
  it("warms a copy holding the latest `window` messages and reads it back exactly", async () => {
    const s = session(4, 5);
    await hot.warm(s);
    expect(await hot.read(s.id)).toEqual({ ...s, messages: s.messages.slice(-3) });
  });

  it("reads a copy with no messages as an empty list (Lua's JSON writes [] as {})", async () => {
    const s = session(0, 0);
    await hot.warm(s);
    await hot.apply(s.id, head(s, 1, 0), []);
    expect((await hot.read(s.id))!.messages).toEqual([]);
  });

  it("applies a write one version ahead: messages appended within the window, head replaced", async () => {
    const s = session(2, 2);
    await hot.warm(s);
    const h = head(s, 3, 4);
    await hot.apply(s.id, h, [
      { role: "user", content: "q" },
      { role: "assistant", content: "a" },
    ]);
    const copy = await hot.read(s.id);
    expect(copy!.messages.map((m) => m.content)).toEqual(["m1", "q", "a"]);
    expect(copy).toMatchObject({ version: 3, messageCount: 4, updateTime: h.updateTime, expireTime: h.expireTime });
  });

  it("turns a copy that missed a write into a miss, and refuses a late warm-up older than the write", async () => {
    const s = session(2, 2);
    await hot.warm(s);
    await hot.apply(s.id, head(s, 4, 4), []); // version 3 was never applied
    expect(await hot.read(s.id)).toBeUndefined();
    await hot.warm(s); // a slow warm-up carrying version 2
    expect(await hot.read(s.id)).toBeUndefined();
    const current = { ...session(4, 4), id: s.id };
    await hot.warm(current);
    expect((await hot.read(s.id))!.version).toBe(4);
  });

  it("reads a copy under any spelling of its id: one session, one copy", async () => {
    const s = session(2, 2);
    await hot.warm(s);
    await hot.apply(s.id.toUpperCase(), head(s, 3, 4), [
      { role: "user", content: "q" },
      { role: "assistant", content: "a" },
    ]);
    expect(await hot.read(s.id)).toMatchObject({ version: 3, messageCount: 4 });
    expect(await hot.read(s.id.toUpperCase())).toMatchObject({ version: 3, messageCount: 4 });
  });

  it("ignores an apply that arrives after a newer state", async () => {
    const s = session(5, 2);
    await hot.warm(s);
    await hot.apply(s.id, head(s, 5, 9), [{ role: "user", content: "late" }]);
    expect(await hot.read(s.id)).toEqual({ ...s, messages: s.messages.slice(-3) });
  });

  it("keeps a deleted session buried: no warm-up or apply brings it back", async () => {
    const s = session(3, 1);
    await hot.warm(s);
    await hot.bury(s.id, 10_000);
    await hot.warm({ ...s, version: 9 });
    await hot.apply(s.id, head(s, 10, 1), []);
    expect(await hot.read(s.id)).toBeUndefined();
  });

  it("keeps tool calls and tool results through a warm-up and through applies (cjson re-encodes the copy)", async () => {
    const wide = new HotCopy(redis, prefix, 50);
    const s = { ...session(1, 0), messages: toolTurn(0), messageCount: 5 };
    await wide.warm(s);
    expect((await wide.read(s.id))!.messages).toStrictEqual(toolTurn(0));
    const empty = { role: "assistant" as const, content: "", toolCalls: [] };
    await wide.apply(s.id, head(s, 2, 11), [...toolTurn(1), empty]);
    expect((await wide.read(s.id))!.messages).toStrictEqual([...toolTurn(0), ...toolTurn(1), empty]);
  });

  it("reads a copy written before tool use unchanged, and appends a tool turn to it", async () => {
    const s = session(1, 2);
    const old = {
      id: s.id,
      userId: s.userId,
      agentId: s.agentId,
      metadata: s.metadata,
      createTime: s.createTime.getTime(),
      updateTime: s.updateTime.getTime(),
      expireTime: s.expireTime.getTime(),
      version: 1,
      messageCount: 2,
      messages: [
        { role: "user", content: "q/0" },
        { role: "assistant", content: "a0" },
      ],
    };
    await redis.set(`${prefix}hot:{${s.id}}`, JSON.stringify(old), "PX", 60_000);
    const wide = new HotCopy(redis, prefix, 50);
    expect((await wide.read(s.id))!.messages).toStrictEqual(old.messages);
    await wide.apply(s.id, head(s, 2, 7), toolTurn(1));
    expect((await wide.read(s.id))!.messages).toStrictEqual([...old.messages, ...toolTurn(1)]);
  });

  it("expires a copy with its session", async () => {
    const short = session(1, 1, 300);
    await hot.warm(short);
    await new Promise((r) => setTimeout(r, 450));
    expect(await hot.read(short.id)).toBeUndefined();
  });
});
