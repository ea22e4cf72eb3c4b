import type { ChatMessage } from "@qingyu/plugin-api";
import type { Redis } from "ioredis";
import { RedisScript } from "../clients/redis-script.ts";
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
// delete) on another process cannot plant a stale copy. Expiry is the session's own.
//
// A copy marked `pending` (a write is being committed to the truth; ms since the mark,
// Redis time) is a miss too, and a warm-up at the copy's own version cannot clear the
// mark: it may have read the truth just before that commit. A warm-up that saw a newer
// version can, and so can any warm-up once the mark is older than ARGV[4] ms, by which
// time a commit that was going to land has landed (a writer killed mid-write leaves
// its mark behind; the truth then decides).
// ARGV: copy JSON, version, expire ms, mark lease ms.
const WARM = new RedisScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = cjson.decode(cur)
  local version = tonumber(ARGV[2])
  if tonumber(v.version) > version then return 0 end
  if v.pending and tonumber(v.version) == version then
    local t = redis.call('TIME')
    if t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(v.pending) < tonumber(ARGV[4]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1
`);

// Marks a copy before a write is committed to the truth (see WARM). A copy already
// marked keeps its older mark; a stub or no copy needs none: both are misses already.
// Returns the mark it set, or 0.
const MARK = new RedisScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local v = cjson.decode(cur)
if v.stub or v.pending then return 0 end
local t = redis.call('TIME')
v.pending = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[1], cjson.encode(v), 'KEEPTTL')
return v.pending
`);

// Takes back this writer's own mark when its write did not commit.
const UNMARK = new RedisScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local v = cjson.decode(cur)
if v.pending ~= tonumber(ARGV[1]) then return 0 end
v.pending = nil
redis.call('SET', KEYS[1], cjson.encode(v), 'KEEPTTL')
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
v.pending = nil
v.version = version
v.updateTime = tonumber(ARGV[3])
v.expireTime = tonumber(ARGV[4])
v.messageCount = tonumber(ARGV[5])
redis.call('SET', KEYS[1], cjson.encode(v), 'PXAT', ARGV[4])
return 1
`);

// Retires a copy that may have missed a write (see HotSuspects): a stub at the version
// the truth holds now, marked pending so a warm-up that read the truth before that
// write cannot clear it (see WARM). A copy already at that version or past it is current.
// ARGV: the truth's version, stub lifetime ms.
const RETIRE = new RedisScript(`
local cur = redis.call('GET', KEYS[1])
local version = tonumber(ARGV[1])
if cur then
  local v = cjson.decode(cur)
  if tonumber(v.version) > version then return 0 end
  if tonumber(v.version) == version and not v.stub and not v.pending then return 0 end
end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], cjson.encode({stub = true, version = version, pending = t[1] * 1000 + math.floor(t[2] / 1000)}), 'PX', ARGV[2])
return 1
`);

/** The cached form: dates as epoch ms. */
interface Cached {
  stub?: boolean;
  /** Set while a write is being committed to the truth (see WARM): a miss. */
  pending?: number;
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
 * one script. PostgreSQL stays the truth: a copy that may have missed a
 * write is replaced by a stub and re-read from there.
 */
export class HotCopy {
  constructor(
    private readonly redis: Redis,
    private readonly keyPrefix: string,
    /** How many of the latest messages the copy keeps. */
    readonly window: number,
    /** How long a write's mark holds off warm-ups at the copy's version (longer than a commit can take). */
    private readonly markLeaseMs = 60_000,
  ) {}

  private key(sessionId: string): string {
    return `${this.keyPrefix}hot:{${sessionId}}`;
  }

  /** The copy, or undefined on a miss (absent, or a stub). */
  async read(sessionId: string): Promise<SessionRecord | undefined> {
    const raw = await this.redis.get(this.key(sessionId));
    if (!raw) return undefined;
    const v = JSON.parse(raw) as Cached;
    if (v.stub || v.pending) return undefined;
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
      messages: Array.isArray(v.messages) ? v.messages : [],
    };
  }

  /** Stores a copy read from the truth, unless a newer write already left its mark. */
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
    await WARM.run(this.redis, [this.key(session.id)], [JSON.stringify(cached), session.version, session.expireTime.getTime(), this.markLeaseMs]);
  }

  /**
   * Before a write is committed to the truth: until the write is applied, the copy is a
   * miss and cannot be warmed back to its old version, so a process that dies between
   * the commit and apply() leaves no stale copy behind. Returns a token for unmark().
   */
  async mark(sessionId: string): Promise<number> {
    return Number(await MARK.run(this.redis, [this.key(sessionId)], []));
  }

  /** The write marked with `token` did not commit: the copy is current again. */
  async unmark(sessionId: string, token: number): Promise<void> {
    if (token) await UNMARK.run(this.redis, [this.key(sessionId)], [token]);
  }

  /** Applies a write the truth has committed: appended messages (none for a checkpoint) and the new head. */
  async apply(sessionId: string, head: SessionHead, appended: readonly ChatMessage[]): Promise<void> {
    await APPLY.run(
      this.redis,
      [this.key(sessionId)],
      [JSON.stringify(appended), head.version, head.updateTime.getTime(), head.expireTime.getTime(), head.messageCount, this.window],
    );
  }

  /**
   * Replaces a copy that may have missed writes with a stub at `version`, the truth's
   * version read now (undefined: the session is gone), unless the copy is already current.
   */
  async retire(sessionId: string, version: number | undefined): Promise<void> {
    await RETIRE.run(this.redis, [this.key(sessionId)], [version ?? Number.MAX_SAFE_INTEGER, 2 * this.markLeaseMs]);
  }

  /** After a delete: a stub no warm-up can overwrite, for as long as a slow one might still arrive. */
  async bury(sessionId: string, forMs: number): Promise<void> {
    await this.redis.set(this.key(sessionId), JSON.stringify({ stub: true, version: Number.MAX_SAFE_INTEGER }), "PX", forMs);
  }

  /** Forgets every copy (when too many may have missed writes to name them). */
  async forgetAll(): Promise<void> {
    let cursor = "0";
    do {
      const [next, keys] = await this.redis.scan(cursor, "MATCH", `${this.keyPrefix}hot:*`, "COUNT", 1000);
      if (keys.length) await this.redis.unlink(...keys);
      cursor = next;
    } while (cursor !== "0");
  }

  /** Forgets copies that may have missed writes while Redis was unreachable. */
  async forget(sessionIds: readonly string[]): Promise<void> {
    if (sessionIds.length) await this.redis.del(...sessionIds.map((id) => this.key(id)));
  }
}
