import { type ChatMessage, Code, ConnectError, ErrorReason, type EventBus, invalidArgument, limitExceeded, notFound, withReason } from "@qingyu/plugin-api";
import { checkMetadata, DEFAULT_SESSION_BOUNDS, type SessionBounds } from "./bounds.ts";
import { checkCheckpointDepth, DEFAULT_MAX_CHECKPOINT_DEPTH } from "./checkpoint-depth.ts";
import { startAtUserMessage, withinTokenBudget } from "./history.ts";
import { withoutNul } from "./messages.ts";
import { notSessionOwner } from "./refusals.ts";
import type { CheckpointRecord, JsonObject, Page, SessionRecord, SessionStore } from "./types.ts";

// Agent limits (maxHistoryTokens) trim with it too.
export { withinTokenBudget } from "./history.ts";

// NUL as JSON.stringify writes it: \u0000 after an even number of backslashes (an odd one is a literal "\\u0000").
const ESCAPED_NUL = /(?<!\\)(?:\\\\)*\\u0000/;

/** Session limits from config; a bound left out takes its default (DEFAULT_SESSION_BOUNDS). */
export interface SessionPolicy extends Partial<SessionBounds> {
  ttlSeconds: number;
  maxTtlSeconds: number;
  historyMessages: number;
  historyTokens: number;
  getMessagesLimit: number;
  maxCheckpointBytes: number;
  /** Deepest checkpoint data accepted, in levels of objects and lists; default DEFAULT_MAX_CHECKPOINT_DEPTH. */
  maxCheckpointDepth?: number;
  checkpointsKept: number;
  defaultPageSize: number;
  maxPageSize: number;
}

/**
 * Sessions as callers see them: ownership checks, limits and events on top of
 * whichever SessionStore is configured.
 */
export class SessionManager {
  private readonly bounds: SessionBounds;

  constructor(
    private readonly store: SessionStore,
    private readonly events: EventBus,
    private readonly policy: SessionPolicy,
  ) {
    this.bounds = { ...DEFAULT_SESSION_BOUNDS };
    for (const key of Object.keys(DEFAULT_SESSION_BOUNDS) as (keyof SessionBounds)[]) {
      if (policy[key] !== undefined) this.bounds[key] = policy[key];
    }
  }

  async create(userId: string, agentId: string, metadata: Record<string, string>, ttlSeconds: number): Promise<SessionRecord> {
    if (!userId) throw invalidArgument("user_id", "is required");
    if (ttlSeconds > this.policy.maxTtlSeconds) {
      throw limitExceeded("ttl_seconds", `must be at most ${this.policy.maxTtlSeconds}`, "sessions.maxTtlSeconds", this.policy.maxTtlSeconds);
    }
    checkMetadata(metadata, this.bounds);
    const session = await this.store.create({
      userId,
      agentId,
      metadata,
      ttlSeconds: ttlSeconds || this.policy.ttlSeconds,
      maxLive: this.bounds.maxSessionsPerUser,
    });
    this.events.publish({ type: "SESSION_CREATED", sessionId: session.id, userId, agentId, data: {} });
    return session;
  }

  /**
   * The session, if it exists and `userId` (when given) owns it, with its
   * latest `messages` messages (none by default: an ownership check reads no history).
   */
  async get(sessionId: string, userId: string, messages = 0): Promise<SessionRecord> {
    if (!sessionId) throw invalidArgument("session_id", "is required");
    const session = await this.store.get(sessionId, { messages });
    if (!session) throw notFound("session", sessionId);
    if (userId && session.userId !== userId) {
      throw notSessionOwner(sessionId);
    }
    return session;
  }

  async list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>> {
    if (!userId) throw invalidArgument("user_id", "is required");
    return this.store.list(userId, this.pageSize(pageSize), pageToken);
  }

  async delete(sessionId: string, userId: string): Promise<void> {
    const session = await this.get(sessionId, userId);
    if (!(await this.store.delete(sessionId))) throw notFound("session", sessionId);
    this.events.publish({ type: "SESSION_DELETED", sessionId, userId: session.userId, agentId: session.agentId, data: {} });
  }

  /** GetSession: the session with as many messages as a client may read at once. */
  read(sessionId: string, userId: string): Promise<SessionRecord> {
    return this.get(sessionId, userId, this.policy.getMessagesLimit);
  }

  /** A turn's one read: the session with the messages its prompt may use (no ownership check yet). */
  forTurn(sessionId: string): Promise<SessionRecord> {
    return this.get(sessionId, "", this.policy.historyMessages);
  }

  /**
   * The history as the prompt takes it: the latest historyMessages, then as
   * many of those, newest first, as fit historyTokens (when set), so a long
   * session never sends an unbounded prompt; either cut starts the window at
   * a user message, so no tool result is separated from its call (history.ts).
   */
  recent(session: SessionRecord): ChatMessage[] {
    const n = this.policy.historyMessages;
    const latest = n === 0 ? [] : session.messages.slice(-n);
    const budget = this.policy.historyTokens;
    return budget === 0 ? startAtUserMessage(latest) : withinTokenBudget(latest, budget);
  }

  /** Stores a turn: the user's message, the assistant's tool calls and the tool results, the answer. */
  appendTurn(sessionId: string, messages: ChatMessage[]): Promise<number> {
    return this.store.appendMessages(sessionId, messages.map(withoutNul));
  }

  /** `expectedVersion` undefined: no version check. */
  async saveCheckpoint(sessionId: string, userId: string, data: JsonObject, expectedVersion: number | undefined): Promise<CheckpointRecord> {
    if (expectedVersion !== undefined && expectedVersion < 0) throw invalidArgument("expected_version", "must not be negative");
    const json = JSON.stringify(data);
    // PostgreSQL's jsonb cannot hold NUL: refuse it the same way on every store.
    if (json.includes("\\u0000") && ESCAPED_NUL.test(json)) throw invalidArgument("data", "must not contain the NUL character (\\u0000)");
    const bytes = Buffer.byteLength(json, "utf8");
    if (bytes > this.policy.maxCheckpointBytes) {
      throw limitExceeded(
        "data",
        `is ${bytes} bytes as JSON; the limit is ${this.policy.maxCheckpointBytes}`,
        "sessions.maxCheckpointBytes",
        this.policy.maxCheckpointBytes,
      );
    }
    checkCheckpointDepth(data, this.policy.maxCheckpointDepth ?? DEFAULT_MAX_CHECKPOINT_DEPTH);
    const session = await this.get(sessionId, userId);
    const checkpoint = await this.store.saveCheckpoint(sessionId, { data, expectedVersion: expectedVersion ?? -1, keep: this.policy.checkpointsKept });
    this.events.publish({
      type: "CHECKPOINT_SAVED",
      sessionId,
      userId: session.userId,
      agentId: session.agentId,
      data: { checkpointId: checkpoint.id, version: checkpoint.version },
    });
    return checkpoint;
  }

  async getCheckpoint(sessionId: string, userId: string, checkpointId: string): Promise<CheckpointRecord> {
    await this.get(sessionId, userId);
    const checkpoint = await this.store.getCheckpoint(sessionId, checkpointId);
    if (!checkpoint) {
      throw checkpointId
        ? notFound("checkpoint", checkpointId)
        : withReason(new ConnectError(`session "${sessionId}" has no checkpoints`, Code.NotFound), ErrorReason.CHECKPOINT_NOT_FOUND, { session_id: sessionId });
    }
    return checkpoint;
  }

  async listCheckpoints(sessionId: string, userId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>> {
    await this.get(sessionId, userId);
    return this.store.listCheckpoints(sessionId, this.pageSize(pageSize), pageToken);
  }

  private pageSize(requested: number): number {
    if (requested < 0) throw invalidArgument("page_size", "must not be negative");
    return Math.min(requested || this.policy.defaultPageSize, this.policy.maxPageSize);
  }
}
