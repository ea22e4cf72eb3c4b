import { type ChatMessage, Code, ConnectError, notFound } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { RedisScript, type ScriptArg } from "../clients/redis-script.ts";
import { storeUnavailable } from "../clients/shared.ts";
import { tooManySessions } from "./bounds.ts";
import { storedMessage } from "./messages.ts";
import { staleVersion } from "./refusals.ts";
import { decodePageToken, encodePageToken } from "./page-token.ts";
import * as lua from "./redis-scripts.ts";
import {
  type CheckpointRecord,
  type CreateSessionInput,
  DEFAULT_PAGE_BYTES,
  type GetOptions,
  type JsonObject,
  type Page,
  type SaveCheckpointInput,
  type SessionRecord,
  type SessionStore,
} from "./types.ts";

/** Settings of a RedisSessionStore. */
export interface RedisSessionStoreOptions {
  /** Prepended to every key, e.g. "qingyu:"; lets several deployments share a Redis. */
  keyPrefix: string;
  /** A listing page's byte budget (see LISTED_OVERHEAD_BYTES); default DEFAULT_PAGE_BYTES. */
  maxPageBytes?: number;
}

/** A session hash's fields in the scripts' order: u a ct ut et ttl v md. */
type Fields = [string, string, string, string, string, string, string, string];

/** A checkpoint as the scripts store it. */
interface StoredCheckpoint {
  id: string;
  v: number;
  t: number;
  p: string;
  d: JsonObject;
}

// What clients hear of (no host, no port); the log also names the backend.
const WHAT = "session store";
const BACKEND = "redis";

/**
 * Sessions in Redis, shared by every replica. Each method is one Lua script run
 * by EVALSHA: one round trip, atomic with its version check, version bump and
 * TTL refresh (layout in redis-scripts.ts). Expiry is Redis's own; the
 * listing drops index entries whose session has expired. The client is the
 * app's shared one: close() leaves it open.
 */
export class RedisSessionStore implements SessionStore {
  private readonly scripts = {
    create: new RedisScript(lua.CREATE),
    get: new RedisScript(lua.GET),
    list: new RedisScript(lua.LIST),
    delete: new RedisScript(lua.DELETE),
    append: new RedisScript(lua.APPEND),
    save: new RedisScript(lua.SAVE_CHECKPOINT),
    getCheckpoint: new RedisScript(lua.GET_CHECKPOINT),
    listCheckpoints: new RedisScript(lua.LIST_CHECKPOINTS),
  };
  private readonly prefix: string;
  private readonly sessionPrefix: string;
  private readonly maxPageBytes: number;

  constructor(
    private readonly redis: Redis,
    options: RedisSessionStoreOptions,
  ) {
    this.prefix = options.keyPrefix;
    this.sessionPrefix = `${options.keyPrefix}s:`;
    this.maxPageBytes = options.maxPageBytes ?? DEFAULT_PAGE_BYTES;
  }

  async create(input: CreateSessionInput): Promise<SessionRecord> {
    const id = randomUUID();
    const ttlMs = Math.round(input.ttlSeconds * 1000);
    const metadata = { ...input.metadata };
    const reply = (await this.run(
      this.scripts.create,
      [this.keys(id)[0], `${this.prefix}u:${input.userId}`, `${this.prefix}l:${input.userId}`],
      [input.userId, input.agentId, JSON.stringify(metadata), ttlMs, id, input.maxLive ?? ""],
    )) as [number, number?];
    if (reply[0] === 0) throw tooManySessions(input.userId, input.maxLive!);
    const now = Number(reply[1]);
    return {
      id,
      userId: input.userId,
      agentId: input.agentId,
      createTime: new Date(now),
      updateTime: new Date(now),
      expireTime: new Date(now + ttlMs),
      metadata,
      version: 0,
      messages: [],
      messageCount: 0,
    };
  }

  async get(sessionId: string, options: GetOptions): Promise<SessionRecord | undefined> {
    const reply = (await this.run(this.scripts.get, this.keys(sessionId), [Math.max(0, options.messages)])) as [...Fields, number, ...string[]] | null;
    if (!reply) return undefined;
    const session = toSession(sessionId, reply.slice(0, 8) as Fields);
    session.messageCount = Number(reply[8]);
    session.messages = (reply.slice(9) as string[]).map((m) => JSON.parse(m) as ChatMessage);
    return session;
  }

  async list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>> {
    const cursor = decodePageToken(pageToken);
    const [more, rows] = (await this.run(
      this.scripts.list,
      [`${this.prefix}u:${userId}`],
      [this.sessionPrefix, cursor ? cursor.time : "", cursor ? cursor.id : "", pageSize, this.maxPageBytes],
    )) as [number, [string, ...Fields, number][]];
    const items = rows.map((row) => {
      const session = toSession(row[0], row.slice(1, 9) as Fields);
      session.messageCount = Number(row[9]);
      return session;
    });
    const last = items.at(-1);
    return {
      items,
      nextPageToken: more === 1 && last ? encodePageToken({ time: last.createTime.getTime(), id: last.id }) : "",
    };
  }

  async delete(sessionId: string): Promise<boolean> {
    return (await this.run(this.scripts.delete, this.keys(sessionId), [this.prefix, sessionId])) === 1;
  }

  async appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number> {
    const version = await this.run(this.scripts.append, this.keys(sessionId), [
      this.prefix,
      sessionId,
      ...messages.map((m) => JSON.stringify(storedMessage(m))),
    ]);
    if (version === null) throw notFound("session", sessionId);
    return Number(version);
  }

  async saveCheckpoint(sessionId: string, { data, expectedVersion, keep }: SaveCheckpointInput): Promise<CheckpointRecord> {
    const id = randomUUID();
    const json = JSON.stringify(data);
    const reply = (await this.run(this.scripts.save, this.keys(sessionId), [this.prefix, id, expectedVersion, keep, json, sessionId])) as [
      number,
      number?,
      number?,
      string?,
    ];
    if (reply[0] === 0) throw notFound("session", sessionId);
    if (reply[0] === 1) {
      throw staleVersion(sessionId, Number(reply[1]), expectedVersion);
    }
    return {
      id,
      sessionId,
      // A copy as read back would be: the caller's object stays its own.
      data: JSON.parse(json) as JsonObject,
      createTime: new Date(Number(reply[2])),
      parentId: reply[3] ?? "",
      version: Number(reply[1]),
    };
  }

  async getCheckpoint(sessionId: string, checkpointId: string): Promise<CheckpointRecord | undefined> {
    const reply = (await this.run(this.scripts.getCheckpoint, this.keys(sessionId), [checkpointId])) as [number, string?];
    if (reply[0] === 0) throw notFound("session", sessionId);
    return reply[0] === 2 ? toCheckpoint(sessionId, reply[1]!) : undefined;
  }

  async listCheckpoints(sessionId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>> {
    // Versions are unique and increasing within a session, so they alone order the listing.
    const cursor = decodePageToken(pageToken);
    const reply = (await this.run(this.scripts.listCheckpoints, this.keys(sessionId), [cursor ? `(${cursor.time}` : "+inf", pageSize, this.maxPageBytes])) as
      [number, string[]] | null;
    if (!reply) throw notFound("session", sessionId);
    const items = reply[1].map((r) => toCheckpoint(sessionId, r));
    const last = items.at(-1);
    return {
      items,
      nextPageToken: reply[0] === 1 && last ? encodePageToken({ time: last.version, id: last.id }) : "",
    };
  }

  async ping(): Promise<void> {
    // A client between reconnect attempts would hold the PING until the next attempt
    // fails; readiness should flip as soon as the connection is known lost.
    if (this.redis.status === "reconnecting" || this.redis.status === "end" || this.redis.status === "close") {
      throw storeUnavailable(WHAT, new Error(`connection ${this.redis.status}`), BACKEND);
    }
    try {
      await this.redis.ping();
    } catch (err) {
      throw storeUnavailable(WHAT, err, BACKEND);
    }
  }

  /** Nothing of its own to release: no timers, and the client belongs to the app. */
  async close(): Promise<void> {}

  /** The session's hash, messages, checkpoints and checkpoint versions, in the scripts' KEYS order. */
  private keys(sessionId: string): [string, string, string, string] {
    const base = `${this.sessionPrefix}{${sessionId}}`;
    return [base, `${base}:m`, `${base}:c`, `${base}:cv`];
  }

  private async run(script: RedisScript, keys: ScriptArg[], args: ScriptArg[]): Promise<unknown> {
    try {
      return await script.run(this.redis, keys, args);
    } catch (err) {
      throw redisFailure(err);
    }
  }
}

// A server that is starting, failing over or stuck in a script is down for now, not broken.
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY)\b/;
// What ioredis rejects with when it cannot reach the server or hear back in time.
const CONNECTION =
  /Connection is closed|Command timed out|Stream isn't writeable|max retries per request|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN/i;

/** A failed Redis call as a status: UNAVAILABLE when Redis is unreachable, INTERNAL when the command itself is wrong. */
function redisFailure(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err as { name?: string; message?: string; code?: string } | undefined;
  const message = String(e?.message ?? err);
  const transient = e?.name === "ReplyError" ? TRANSIENT_REPLY.test(message) : CONNECTION.test(message) || CONNECTION.test(e?.code ?? "");
  if (transient) return storeUnavailable(WHAT, err, BACKEND);
  return new ConnectError(`redis ${WHAT} failed: ${message}`, Code.Internal, undefined, undefined, err);
}

function toSession(id: string, [u, a, ct, ut, et, , v, md]: Fields): SessionRecord {
  return {
    id,
    userId: u,
    agentId: a,
    createTime: new Date(Number(ct)),
    updateTime: new Date(Number(ut)),
    expireTime: new Date(Number(et)),
    metadata: JSON.parse(md) as Record<string, string>,
    version: Number(v),
    messages: [],
    messageCount: 0,
  };
}

function toCheckpoint(sessionId: string, json: string): CheckpointRecord {
  const c = JSON.parse(json) as StoredCheckpoint;
  return { id: c.id, sessionId, data: c.d, createTime: new Date(c.t), parentId: c.p, version: c.v };
}
