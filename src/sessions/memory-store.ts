import { type ChatMessage, Code, ConnectError, notFound } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import { decodePageToken, encodePageToken, isAfter, newestFirst } from "./page-token.ts";
import type {
  CheckpointRecord,
  CreateSessionInput,
  GetOptions,
  Page,
  SaveCheckpointInput,
  SessionRecord,
  SessionStore,
} from "./types.ts";

interface Entry {
  session: SessionRecord;
  ttlMs: number;
  checkpoints: CheckpointRecord[]; // oldest first
}

/**
 * Sessions in this process's memory: the default, for development and single
 * replicas. Expiry is checked on every read and swept periodically.
 */
export class MemorySessionStore implements SessionStore {
  private readonly entries = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    sweepIntervalMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), sweepIntervalMs);
    this.sweeper.unref();
  }

  async create(input: CreateSessionInput): Promise<SessionRecord> {
    const now = this.now();
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
    this.entries.set(session.id, { session, ttlMs: input.ttlSeconds * 1000, checkpoints: [] });
    return copySession(session, 0);
  }

  async get(sessionId: string, options: GetOptions): Promise<SessionRecord | undefined> {
    const entry = this.live(sessionId);
    return entry && copySession(entry.session, options.messages);
  }

  async list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>> {
    const cursor = decodePageToken(pageToken);
    const mine: SessionRecord[] = [];
    for (const id of this.entries.keys()) {
      const entry = this.live(id);
      if (entry && entry.session.userId === userId) mine.push(entry.session);
    }
    mine.sort((a, b) => newestFirst(key(a), key(b)));
    const rest = mine.filter((s) => isAfter(cursor, s.createTime.getTime(), s.id));
    const items = rest.slice(0, pageSize);
    const last = items.at(-1);
    return {
      items: items.map((s) => copySession(s, 0)),
      nextPageToken: rest.length > pageSize && last ? encodePageToken(key(last)) : "",
    };
  }

  async delete(sessionId: string): Promise<boolean> {
    return this.live(sessionId) !== undefined && this.entries.delete(sessionId);
  }

  async appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number> {
    const entry = this.mustGet(sessionId);
    entry.session.messages.push(...messages.map((m) => ({ ...m })));
    entry.session.messageCount = entry.session.messages.length;
    return this.touch(entry);
  }

  async saveCheckpoint(sessionId: string, { data, expectedVersion, keep }: SaveCheckpointInput): Promise<CheckpointRecord> {
    const entry = this.mustGet(sessionId);
    if (expectedVersion >= 0 && expectedVersion !== entry.session.version) {
      throw new ConnectError(
        `session "${sessionId}" is at version ${entry.session.version}, not the expected ${expectedVersion}`,
        Code.Aborted,
      );
    }
    const version = this.touch(entry);
    const checkpoint: CheckpointRecord = {
      id: randomUUID(),
      sessionId,
      data: structuredClone(data),
      createTime: entry.session.updateTime,
      parentId: entry.checkpoints.at(-1)?.id ?? "",
      version,
    };
    entry.checkpoints.push(checkpoint);
    if (entry.checkpoints.length > keep) entry.checkpoints.splice(0, entry.checkpoints.length - keep);
    return structuredClone(checkpoint);
  }

  async getCheckpoint(sessionId: string, checkpointId: string): Promise<CheckpointRecord | undefined> {
    const { checkpoints } = this.mustGet(sessionId);
    const found = checkpointId === "" ? checkpoints.at(-1) : checkpoints.find((c) => c.id === checkpointId);
    return found && structuredClone(found);
  }

  async listCheckpoints(sessionId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>> {
    const { checkpoints } = this.mustGet(sessionId);
    // Versions are unique and increasing within a session, so they order the listing.
    const cursor = decodePageToken(pageToken);
    const rest = [...checkpoints].reverse().filter((c) => !cursor || c.version < cursor.time);
    const items = rest.slice(0, pageSize);
    const last = items.at(-1);
    return {
      items: items.map((c) => structuredClone(c)),
      nextPageToken: rest.length > pageSize && last ? encodePageToken({ time: last.version, id: last.id }) : "",
    };
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.entries.clear();
  }

  private live(sessionId: string): Entry | undefined {
    const entry = this.entries.get(sessionId);
    if (entry && entry.session.expireTime.getTime() <= this.now()) {
      this.entries.delete(sessionId);
      return undefined;
    }
    return entry;
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

  private sweep(): void {
    for (const id of this.entries.keys()) this.live(id);
  }
}

const key = (s: SessionRecord) => ({ time: s.createTime.getTime(), id: s.id });

function copySession(s: SessionRecord, messages: number): SessionRecord {
  return {
    ...s,
    createTime: new Date(s.createTime),
    updateTime: new Date(s.updateTime),
    expireTime: new Date(s.expireTime),
    metadata: { ...s.metadata },
    messages: messages > 0 ? s.messages.slice(-messages).map((m) => ({ ...m })) : [],
  };
}
