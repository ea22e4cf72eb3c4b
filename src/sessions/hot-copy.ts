import type { ChatMessage } from "@qingyu/plugin-api";
import type { Redis } from "ioredis";
import { RedisScript } from "../clients/redis-script.ts";
import { storedMessage } from "./messages.ts";
import type { SessionRecord } from "./types.ts";

/** What a write changed in a session, as the truth store reports it. */
export interface SessionHead {
  version: number;
  updateTime: Date;
  expireTime: Date;
  messageCount: number;
}

// A stub holds only a version: reads treat it as a miss, and a warm-up carrying an
// older version than the stub's is refused, so a slow warm-up racing a write (or a
// delete) on another process does not plant a copy older than one already there.
// A copy is only ever served after its version is checked against the truth's (see
// TieredSessionStore.get), so nothing here has to be exact for reads to be correct:
// these rules only keep the copy current often enough to be worth reading.
// ARGV: copy JSON, version, expire ms.
const WARM = new RedisScript(`
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cjson.decode(cur).version) > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1
`);

// ARGV: messages JSON array, new version, update ms, expire ms, message count, window.
// Applies a write to the copy when the copy is exactly one version behind; a copy or
// stub already at or past it is left alone (a late apply, or a deleted session's
// stub); otherwise leaves a stub at the new version (the copy missed something).
const APPLY = new RedisScript(`
local cur = redis.call('GET', KEYS[1])
local version = tonumber(ARGV[2])
local v = cur and cjson.decode(cur)
if v and tonumber(v.version) >= version then return 0 end
if not v or v.stub or tonumber(v.version) ~= version - 1 then
  redis.call('SET', KEYS[1], cjson.encode({stub = true, version = version}), 'PXAT', ARGV[4])
  return 0
end
local msgs = v.messages
if type(msgs) ~= 'table' then msgs = {} end
for _, m in ipairs(cjson.decode(ARGV[1])) do table.insert(msgs, m) end
local window = tonumber(ARGV[6])
local keep = {}
for i = math.max(1, #msgs - window + 1), #msgs do table.insert(keep, msgs[i]) end
v.messages = keep
v.version = version
v.updateTime = tonumber(ARGV[3])
v.expireTime = tonumber(ARGV[4])
v.messageCount = tonumber(ARGV[5])
redis.call('SET', KEYS[1], cjson.encode(v), 'PXAT', ARGV[4])
return 1
`);

// APPLY re-encodes the copy with cjson, which writes an empty list as {}: an
// assistant message's empty toolCalls comes back as one.
function emptyListsBack(m: ChatMessage): ChatMessage {
  if (m.toolCalls !== undefined && !Array.isArray(m.toolCalls)) m.toolCalls = [];
  return m;
}

/** The cached form: dates as epoch ms; messages as the stores keep them (messages.ts). */
interface Cached {
  stub?: boolean;
  id: string;
  userId: string;
  agentId: string;
  metadata: Record<string, string>;
  createTime: number;
  updateTime: number;
  expireTime: number;
  version: number;
  messageCount: number;
  messages: ChatMessage[] | Record<string, never>;
}

/**
 * The tiered store's Redis copy of a session: its head and its latest
 * `window` messages, in one key, so a turn's read is one GET and its write
 * one script. PostgreSQL stays the truth: the tiered store serves a copy only
 * at the version PostgreSQL holds, and re-reads from there otherwise.
 */
export class HotCopy {
  constructor(
    private readonly redis: Redis,
    private readonly keyPrefix: string,
    /** How many of the latest messages the copy keeps. */
    readonly window: number,
  ) {}

  // PostgreSQL reads a UUID in any case: so must the copy's key, or one row gets two copies.
  private key(sessionId: string): string {
    return `${this.keyPrefix}hot:{${sessionId.toLowerCase()}}`;
  }

  /** The copy, or undefined on a miss (absent, or a stub). */
  async read(sessionId: string): Promise<SessionRecord | undefined> {
    const raw = await this.redis.get(this.key(sessionId));
    if (!raw) return undefined;
    const v = JSON.parse(raw) as Cached;
    if (v.stub) return undefined;
    return {
      id: v.id,
      userId: v.userId,
      agentId: v.agentId,
      metadata: v.metadata ?? {},
      createTime: new Date(v.createTime),
      updateTime: new Date(v.updateTime),
      expireTime: new Date(v.expireTime),
      version: v.version,
      messageCount: v.messageCount,
      // cjson writes an empty list as {}.
      messages: Array.isArray(v.messages) ? v.messages.map(emptyListsBack) : [],
    };
  }

  /** Stores a copy read from the truth, unless one at a newer version is already there. */
  async warm(session: SessionRecord): Promise<void> {
    const cached: Cached = {
      id: session.id,
      userId: session.userId,
      agentId: session.agentId,
      metadata: session.metadata,
      createTime: session.createTime.getTime(),
      updateTime: session.updateTime.getTime(),
      expireTime: session.expireTime.getTime(),
      version: session.version,
      messageCount: session.messageCount,
      messages: session.messages.slice(-this.window),
    };
    await WARM.run(this.redis, [this.key(session.id)], [JSON.stringify(cached), session.version, session.expireTime.getTime()]);
  }

  /** Applies a write the truth has committed: appended messages (none for a checkpoint) and the new head. */
  async apply(sessionId: string, head: SessionHead, appended: readonly ChatMessage[]): Promise<void> {
    await APPLY.run(
      this.redis,
      [this.key(sessionId)],
      [JSON.stringify(appended.map(storedMessage)), head.version, head.updateTime.getTime(), head.expireTime.getTime(), head.messageCount, this.window],
    );
  }

  /** After a delete: a stub no warm-up can overwrite, for as long as a slow one might still arrive. */
  async bury(sessionId: string, forMs: number): Promise<void> {
    await this.redis.set(this.key(sessionId), JSON.stringify({ stub: true, version: Number.MAX_SAFE_INTEGER }), "PX", forMs);
  }
}
