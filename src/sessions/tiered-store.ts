import type { ChatMessage } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import { failureDetail } from "../clients/shared.ts";
import type { HotCopy, SessionHead } from "./hot-copy.ts";
import type { CheckpointRecord, CreateSessionInput, GetOptions, Page, SaveCheckpointInput, SessionRecord, SessionStore } from "./types.ts";

/** The store of record under a tiered store: a SessionStore that also reports the head each write produced, and reads a head's version alone. */
export interface TruthStore extends SessionStore {
  append(sessionId: string, messages: ChatMessage[]): Promise<SessionHead>;
  saveCheckpointWithHead(sessionId: string, input: SaveCheckpointInput): Promise<{ checkpoint: CheckpointRecord; head: SessionHead }>;
  /** The live session's current version (undefined: gone or expired), by primary key. */
  version(sessionId: string): Promise<number | undefined>;
}

/** Tiered store tuning. */
export interface TieredOptions {
  /** After a Redis failure, how long reads and writes skip Redis before trying it again. */
  retryAfterMs: number;
}

// How long a deleted session's stub outlives it: longer than any warm-up can be in flight.
const BURY_MS = 60_000;

/**
 * `redis+postgres`: PostgreSQL is the truth, Redis a hot copy of each session's
 * head and latest messages, so a turn's read need not fetch its history from
 * PostgreSQL.
 *
 * A copy is served only when its version is the one PostgreSQL holds at the
 * time of the read: the copy's GET and a primary-key read of the version go out
 * together, so the check costs a round trip in parallel, not in series. Whatever
 * Redis holds (a copy another process's write could not update because Redis
 * refused writes, a snapshot restored after a restart, a copy under any other
 * spelling of the id), no read and no turn on any process sees a version older
 * than the last write PostgreSQL acknowledged before the read began. A copy that
 * fails the check is a miss: the read is answered from PostgreSQL and warms it.
 *
 * Every write is committed to PostgreSQL before the call returns, then applied to
 * the copy. Redis failing never fails a call: it is skipped for a while.
 */
export class TieredSessionStore implements SessionStore {
  private downUntil = 0;

  constructor(
    private readonly truth: TruthStore,
    private readonly hot: HotCopy,
    private readonly options: TieredOptions,
    private readonly log: Logger,
  ) {}

  async create(input: CreateSessionInput): Promise<SessionRecord> {
    const session = await this.truth.create(input);
    await this.toHot(() => this.hot.warm(session));
    return session;
  }

  async get(sessionId: string, options: GetOptions): Promise<SessionRecord | undefined> {
    if (this.redisUp()) {
      const copy = this.hot.read(sessionId).catch((err: unknown) => void this.trip(err));
      const version = await this.truth.version(sessionId);
      const cached = await copy;
      if (version === undefined) return undefined;
      // Served only at the truth's version, and only when it holds every message the read wants.
      if (cached?.version === version && (options.messages <= cached.messages.length || cached.messages.length === cached.messageCount)) {
        return { ...cached, messages: options.messages > 0 ? cached.messages.slice(-options.messages) : [] };
      }
    }
    const session = await this.truth.get(sessionId, { messages: Math.max(options.messages, this.hot.window) });
    if (!session) return undefined;
    // Not awaited: a copy is checked before it is served, so a late warm-up is never wrong.
    void this.toHot(() => this.hot.warm(session));
    return { ...session, messages: options.messages > 0 ? session.messages.slice(-options.messages) : [] };
  }

  list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>> {
    return this.truth.list(userId, pageSize, pageToken);
  }

  async delete(sessionId: string): Promise<boolean> {
    const deleted = await this.truth.delete(sessionId);
    // Not needed for correctness (the version check finds no row); it frees the copy now, not at expiry.
    await this.toHot(() => this.hot.bury(sessionId, BURY_MS));
    return deleted;
  }

  async appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number> {
    const head = await this.truth.append(sessionId, messages);
    // Awaited: a client that has the answer may ask another process for the next turn at once, and find the copy current.
    await this.toHot(() => this.hot.apply(sessionId, head, messages));
    return head.version;
  }

  async saveCheckpoint(sessionId: string, input: SaveCheckpointInput): Promise<CheckpointRecord> {
    const { checkpoint, head } = await this.truth.saveCheckpointWithHead(sessionId, input);
    await this.toHot(() => this.hot.apply(sessionId, head, []));
    return checkpoint;
  }

  getCheckpoint(sessionId: string, checkpointId: string): Promise<CheckpointRecord | undefined> {
    return this.truth.getCheckpoint(sessionId, checkpointId);
  }

  listCheckpoints(sessionId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>> {
    return this.truth.listCheckpoints(sessionId, pageSize, pageToken);
  }

  /** Ready when the truth answers: Redis down only makes the server slower. */
  ping(): Promise<void> {
    return this.truth.ping();
  }

  close(): Promise<void> {
    return this.truth.close();
  }

  private redisUp(): boolean {
    return Date.now() >= this.downUntil;
  }

  // A failed update is only a copy that will fail its version check: log, and skip Redis for a while.
  private async toHot(update: () => Promise<void>): Promise<void> {
    if (!this.redisUp()) return;
    try {
      await update();
    } catch (err) {
      this.trip(err);
    }
  }

  private trip(err: unknown): void {
    if (this.redisUp()) {
      this.log.warn({ err: failureDetail(err), retryAfterMs: this.options.retryAfterMs }, "redis copy unavailable; serving sessions from postgres");
    }
    this.downUntil = Date.now() + this.options.retryAfterMs;
  }
}
