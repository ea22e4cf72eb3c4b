import { type ChatMessage, notFound } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import { pageCut, sessionListedBytes, tooManySessions } from "./bounds.ts";
import { storedMessage } from "./messages.ts";
import { staleVersion } from "./refusals.ts";
import { type Cursor, decodePageToken, encodePageToken, newestFirst } from "./page-token.ts";
import {
  type CheckpointRecord,
  type CreateSessionInput,
  DEFAULT_PAGE_BYTES,
  type GetOptions,
  LISTED_OVERHEAD_BYTES,
  type Page,
  type SaveCheckpointInput,
  type SessionRecord,
  type SessionStore,
} from "./types.ts";

interface Entry {
  session: SessionRecord;
  ttlMs: number;
  /** Its weight against a listing's byte budget; metadata never changes, so neither does this. */
  listedBytes: number;
  checkpoints: { record: CheckpointRecord; bytes: number }[]; // oldest first
}

/**
 * Sessions in this process's memory: the default, for development and single
 * replicas. Expiry is checked on every read and swept periodically. Each user's
 * sessions are also kept in their own list, oldest first, so a listing or the
 * per-user cap costs that user's sessions, never everyone's.
 */
export class MemorySessionStore implements SessionStore {
  private readonly entries = new Map<string, Entry>();
  /** Per user, their entries in (create time, id) order: a listing reads it backwards from its cursor. */
  private readonly byUser = new Map<string, Entry[]>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    sweepIntervalMs: number,
    private readonly now: () => number = Date.now,
    /** A listing page's byte budget (see LISTED_OVERHEAD_BYTES). */
    private readonly maxPageBytes = DEFAULT_PAGE_BYTES,
  ) {
    this.sweeper = setInterval(() => this.sweep(), sweepIntervalMs);
    this.sweeper.unref();
  }

  async create(input: CreateSessionInput): Promise<SessionRecord> {
    const now = this.now();
    const mine = this.byUser.get(input.userId) ?? [];
    // Checked and inserted with no await between: concurrent creates cannot both pass.
    if (input.maxLive !== undefined && mine.length >= input.maxLive && this.dropExpired(mine) >= input.maxLive) {
      throw tooManySessions(input.userId, input.maxLive);
    }
    const session: SessionRecord = {
      id: randomUUID(),
      userId: input.userId,
      agentId: input.agentId,
      createTime: new Date(now),
      updateTime: new Date(now),
      expireTime: new Date(now + input.ttlSeconds * 1000),
      metadata: { ...input.metadata },
      version: 0,
      messages: [],
      messageCount: 0,
    };
    const entry: Entry = { session, ttlMs: input.ttlSeconds * 1000, listedBytes: sessionListedBytes(session), checkpoints: [] };
    this.entries.set(session.id, entry);
    mine.splice(insertionPoint(mine, key(session)), 0, entry);
    this.byUser.set(input.userId, mine);
    return copySession(session, 0);
  }

  async get(sessionId: string, options: GetOptions): Promise<SessionRecord | undefined> {
    const entry = this.live(sessionId);
    return entry && copySession(entry.session, options.messages);
  }

  async list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>> {
    const cursor = decodePageToken(pageToken);
    const mine = this.byUser.get(userId) ?? [];
    const now = this.now();
    // Newest first from just below the cursor; one live entry past the page says whether there is a next.
    const found: Entry[] = [];
    for (let i = (cursor ? insertionPoint(mine, cursor) : mine.length) - 1; i >= 0 && found.length <= pageSize; i--) {
      const entry = mine[i]!;
      if (entry.session.expireTime.getTime() > now) found.push(entry);
    }
    const n = pageCut(
      found.map((e) => e.listedBytes),
      pageSize,
      this.maxPageBytes,
    );
    const items = found.slice(0, n).map((e) => e.session);
    return {
      items: items.map((s) => copySession(s, 0)),
      nextPageToken: found.length > n ? encodePageToken(key(items.at(-1)!)) : "",
    };
  }

  async delete(sessionId: string): Promise<boolean> {
    const entry = this.live(sessionId);
    if (!entry) return false;
    this.remove(entry);
    return true;
  }

  async appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number> {
    const entry = this.mustGet(sessionId);
    entry.session.messages.push(...messages.map(storedMessage));
    entry.session.messageCount = entry.session.messages.length;
    return this.touch(entry);
  }

  async saveCheckpoint(sessionId: string, { data, expectedVersion, keep }: SaveCheckpointInput): Promise<CheckpointRecord> {
    const entry = this.mustGet(sessionId);
    if (expectedVersion >= 0 && expectedVersion !== entry.session.version) {
      throw staleVersion(sessionId, entry.session.version, expectedVersion);
    }
    const version = this.touch(entry);
    const checkpoint: CheckpointRecord = {
      id: randomUUID(),
      sessionId,
      data: structuredClone(data),
      createTime: entry.session.updateTime,
      parentId: entry.checkpoints.at(-1)?.record.id ?? "",
      version,
    };
    const bytes = LISTED_OVERHEAD_BYTES + Buffer.byteLength(JSON.stringify(data));
    entry.checkpoints.push({ record: checkpoint, bytes });
    if (entry.checkpoints.length > keep) entry.checkpoints.splice(0, entry.checkpoints.length - keep);
    return structuredClone(checkpoint);
  }

  async getCheckpoint(sessionId: string, checkpointId: string): Promise<CheckpointRecord | undefined> {
    const { checkpoints } = this.mustGet(sessionId);
    const found = checkpointId === "" ? checkpoints.at(-1) : checkpoints.find((c) => c.record.id === checkpointId);
    return found && structuredClone(found.record);
  }

  async listCheckpoints(sessionId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>> {
    const { checkpoints } = this.mustGet(sessionId);
    // Versions are unique and increasing within a session, so they order the listing.
    const cursor = decodePageToken(pageToken);
    const rest = [...checkpoints].reverse().filter((c) => !cursor || c.record.version < cursor.time);
    const n = pageCut(
      rest.slice(0, pageSize + 1).map((c) => c.bytes),
      pageSize,
      this.maxPageBytes,
    );
    const items = rest.slice(0, n).map((c) => c.record);
    const last = items.at(-1);
    return {
      items: items.map((c) => structuredClone(c)),
      nextPageToken: rest.length > n && last ? encodePageToken({ time: last.version, id: last.id }) : "",
    };
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.entries.clear();
    this.byUser.clear();
  }

  private live(sessionId: string): Entry | undefined {
    const entry = this.entries.get(sessionId);
    if (entry && this.expired(entry)) {
      this.remove(entry);
      return undefined;
    }
    return entry;
  }

  private expired(entry: Entry): boolean {
    return entry.session.expireTime.getTime() <= this.now();
  }

  private remove(entry: Entry): void {
    this.entries.delete(entry.session.id);
    const mine = this.byUser.get(entry.session.userId);
    if (!mine) return;
    const at = insertionPoint(mine, key(entry.session));
    if (mine[at] === entry) mine.splice(at, 1);
    if (mine.length === 0) this.byUser.delete(entry.session.userId);
  }

  /** Drops the user's expired entries; returns how many live ones remain. */
  private dropExpired(mine: Entry[]): number {
    let kept = 0;
    for (const entry of mine) {
      if (this.expired(entry)) this.entries.delete(entry.session.id);
      else mine[kept++] = entry;
    }
    mine.length = kept;
    return kept;
  }

  private mustGet(sessionId: string): Entry {
    const entry = this.live(sessionId);
    if (!entry) throw notFound("session", sessionId);
    return entry;
  }

  /** Bumps the version and refreshes the TTL, as every write does. */
  private touch(entry: Entry): number {
    const now = this.now();
    entry.session.version += 1;
    entry.session.updateTime = new Date(now);
    entry.session.expireTime = new Date(now + entry.ttlMs);
    return entry.session.version;
  }

  /** One pass per user list, so a sweep costs the sessions held, not their square. */
  private sweep(): void {
    for (const [userId, mine] of this.byUser) {
      if (this.dropExpired(mine) === 0) this.byUser.delete(userId);
    }
  }
}

const key = (s: SessionRecord): Cursor => ({ time: s.createTime.getTime(), id: s.id });

/** The index of the first entry at or after `at` in (time, id) order (binary search). */
function insertionPoint(mine: readonly Entry[], at: Cursor): number {
  let lo = 0;
  let hi = mine.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    // newestFirst > 0: the entry sorts before `at` in (time, id) order.
    if (newestFirst(key(mine[mid]!.session), at) > 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function copySession(s: SessionRecord, messages: number): SessionRecord {
  return {
    ...s,
    createTime: new Date(s.createTime),
    updateTime: new Date(s.updateTime),
    expireTime: new Date(s.expireTime),
    metadata: { ...s.metadata },
    messages: messages > 0 ? s.messages.slice(-messages).map(storedMessage) : [],
  };
}
