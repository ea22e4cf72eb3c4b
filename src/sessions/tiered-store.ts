import type { ChatMessage } from "@qingyu/plugin-api";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { failureDetail } from "../clients/shared.ts";
import type { HotCopy, SessionHead } from "./hot-copy.ts";
import type { HotSuspects, Suspect } from "./hot-suspects.ts";
import type {
  CheckpointRecord,
  CreateSessionInput,
  GetOptions,
  Page,
  SaveCheckpointInput,
  SessionRecord,
  SessionStore,
} from "./types.ts";

/** The store of record under a tiered store: a SessionStore that also reports the head each write produced. */
export interface TruthStore extends SessionStore {
  append(sessionId: string, messages: ChatMessage[]): Promise<SessionHead>;
  saveCheckpointWithHead(sessionId: string, input: SaveCheckpointInput): Promise<{ checkpoint: CheckpointRecord; head: SessionHead }>;
}

/** Tiered store tuning. */
export interface TieredOptions {
  /** After a Redis failure, how long reads and writes skip Redis before trying it again. */
  retryAfterMs: number;
  /** Most sessions remembered as possibly stale in Redis; past it, every copy is dropped when Redis returns. */
  maxDirty: number;
  /** How often the shared list of possibly stale copies (HotSuspects) is read and worked off. */
  suspectPollMs: number;
  /** Most suspects read and worked off per poll; while more are listed, no copy is served. */
  suspectsPerPoll: number;
}

// How long a deleted session's stub outlives it: longer than any warm-up can be in flight.
const BURY_MS = 60_000;

/**
 * `redis+postgres`: PostgreSQL is the truth, Redis a hot copy of each session's
 * head and latest messages. Every write is committed to the truth before the
 * call returns; the copy is then updated in one script, so a turn costs one
 * Redis read, one Redis mark, one PostgreSQL write and one Redis write. A read Redis cannot
 * answer (flushed, evicted, restarted, unreachable) is served from the truth
 * and warms the copy again. Redis being down never fails a call: it is skipped
 * for a while, and the copies that may have missed writes meanwhile are
 * dropped when it answers again.
 */
export class TieredSessionStore implements SessionStore {
  private downUntil = 0;
  private readonly dirty = new Set<string>();
  private lostTrack = false;
  private forgetting: Promise<void> | undefined;
  private readonly onReady = () => {
    void this.forgetDirty();
    void this.pollSuspects();
  };
  /** Listed in HotSuspects (by any process): their copies are not served. */
  private suspected = new Set<string>();
  /** Listed by this process since the last poll read the list. */
  private readonly listedHere = new Set<string>();
  /** Until the whole list has been read (once, and every poll after), no copy is served: one may be stale. */
  private suspectsKnown = false;
  private polling: Promise<void> | undefined;
  private readonly poller: NodeJS.Timeout;

  constructor(
    private readonly truth: TruthStore,
    private readonly hot: HotCopy,
    private readonly redis: Redis,
    private readonly suspects: HotSuspects,
    private readonly options: TieredOptions,
    private readonly log: Logger,
  ) {
    redis.on("ready", this.onReady);
    this.poller = setInterval(() => void this.pollSuspects(), options.suspectPollMs);
    this.poller.unref();
    void this.pollSuspects();
  }

  /** Resolves once the shared suspect list has been read (or could not be: PostgreSQL down). */
  ready(): Promise<void> {
    return this.pollSuspects();
  }

  async create(input: CreateSessionInput): Promise<SessionRecord> {
    const session = await this.truth.create(input);
    await this.toHot(session.id, () => this.hot.warm(session));
    return session;
  }

  async get(sessionId: string, options: GetOptions): Promise<SessionRecord | undefined> {
    if (this.usable(sessionId)) {
      try {
        const copy = await this.hot.read(sessionId);
        // The copy serves a read only when it holds every message the read wants.
        if (copy && (options.messages <= copy.messages.length || copy.messages.length === copy.messageCount)) {
          return { ...copy, messages: options.messages > 0 ? copy.messages.slice(-options.messages) : [] };
        }
      } catch (err) {
        this.trip(err);
      }
    }
    const session = await this.truth.get(sessionId, { messages: Math.max(options.messages, this.hot.window) });
    if (!session) return undefined;
    // Not awaited: commands on the one connection run in order, so a later write's update lands after it.
    void this.toHot(sessionId, () => this.hot.warm(session));
    return { ...session, messages: options.messages > 0 ? session.messages.slice(-options.messages) : [] };
  }

  list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>> {
    return this.truth.list(userId, pageSize, pageToken);
  }

  async delete(sessionId: string): Promise<boolean> {
    const deleted = await this.marked(sessionId, () => this.truth.delete(sessionId));
    await this.toHot(sessionId, () => this.hot.bury(sessionId, BURY_MS));
    return deleted;
  }

  async appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number> {
    const head = await this.marked(sessionId, () => this.truth.append(sessionId, messages));
    // Awaited: a client that has the answer may ask another process for the next turn at once.
    await this.toHot(sessionId, () => this.hot.apply(sessionId, head, messages));
    return head.version;
  }

  async saveCheckpoint(sessionId: string, input: SaveCheckpointInput): Promise<CheckpointRecord> {
    const { checkpoint, head } = await this.marked(sessionId, () => this.truth.saveCheckpointWithHead(sessionId, input));
    await this.toHot(sessionId, () => this.hot.apply(sessionId, head, []));
    return checkpoint;
  }

  /**
   * Commits `write` to the truth with the copy marked first (HotCopy.mark): if this
   * process dies, or Redis stops answering, between the commit and the copy's update,
   * the copy is a miss, not a stale answer that outlives this process's memory. A mark
   * Redis cannot take is skipped as any update is (the session is remembered as dirty).
   */
  private async marked<T>(sessionId: string, write: () => Promise<T>): Promise<T> {
    let token = 0;
    const marked = await this.toHot(sessionId, async () => void (token = await this.hot.mark(sessionId)));
    if (!marked) {
      // The copy may still be served, by other processes or after this one dies: list it where all see it.
      this.listedHere.add(sessionId);
      this.suspected.add(sessionId);
      await this.suspects.add(sessionId);
    }
    try {
      return await write();
    } catch (err) {
      if (token) await this.toHot(sessionId, () => this.hot.unmark(sessionId, token));
      throw err;
    }
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

  async close(): Promise<void> {
    clearInterval(this.poller);
    this.redis.off("ready", this.onReady);
    await this.polling;
    await this.truth.close();
  }

  private usable(sessionId: string): boolean {
    if (Date.now() < this.downUntil) return false;
    // Redis may be back without a reconnect (a timeout, not a dropped connection): clean up now.
    if ((this.dirty.size > 0 || this.lostTrack) && !this.forgetting) void this.forgetDirty();
    return this.suspectsKnown && !this.suspected.has(sessionId) && !this.dirty.has(sessionId) && !this.lostTrack;
  }

  // A failed update leaves the session marked: its copy may be stale until Redis answers again.
  private async toHot(sessionId: string, update: () => Promise<void>): Promise<boolean> {
    if (Date.now() < this.downUntil) {
      this.markDirty(sessionId);
      return false;
    }
    try {
      await update();
      return true;
    } catch (err) {
      this.trip(err);
      this.markDirty(sessionId);
      return false;
    }
  }

  /** Reads the shared suspect list and retires the copies it names, then unlists them. */
  private pollSuspects(): Promise<void> {
    return (this.polling ??= (async () => {
      let listed: Suspect[];
      try {
        listed = await this.suspects.list(this.options.suspectsPerPoll);
      } catch (err) {
        // PostgreSQL is down: writes fail too; keep what is known and try at the next poll.
        this.log.warn({ err: failureDetail(err) }, "could not read the list of stale redis copies");
        return;
      }
      this.suspected = new Set([...listed.map((s) => s.id), ...this.listedHere]);
      this.listedHere.clear();
      // A full page may have left suspects unread, whose copies must not be served either.
      this.suspectsKnown = listed.length < this.options.suspectsPerPoll;
      if (!listed.length || Date.now() < this.downUntil) return;
      try {
        await Promise.all(listed.map((s) => this.hot.retire(s.id, s.version)));
        await this.suspects.clear(listed);
        for (const s of listed) this.suspected.delete(s.id);
      } catch (err) {
        this.trip(err);
      }
    })().finally(() => (this.polling = undefined)));
  }

  private markDirty(sessionId: string): void {
    if (this.dirty.size >= this.options.maxDirty) this.lostTrack = true;
    else this.dirty.add(sessionId);
  }

  private trip(err: unknown): void {
    if (Date.now() >= this.downUntil) {
      this.log.warn({ err: failureDetail(err), retryAfterMs: this.options.retryAfterMs }, "redis copy unavailable; serving sessions from postgres");
    }
    this.downUntil = Date.now() + this.options.retryAfterMs;
  }

  private forgetDirty(): Promise<void> {
    return (this.forgetting ??= (async () => {
      const ids = [...this.dirty];
      const all = this.lostTrack;
      try {
        if (all) await this.hot.forgetAll();
        else await this.hot.forget(ids);
        for (const id of ids) this.dirty.delete(id);
        if (all) this.lostTrack = false;
      } catch (err) {
        this.trip(err);
      }
    })().finally(() => (this.forgetting = undefined)));
  }
}
