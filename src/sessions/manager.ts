import { Code, ConnectError, invalidArgument, notFound } from "../errors.ts";
import type { EventBus } from "../events/types.ts";
import type { ChatMessage } from "../providers/types.ts";
import type { CheckpointRecord, JsonObject, Page, SessionRecord, SessionStore } from "./types.ts";

/** Session limits from config. */
export interface SessionPolicy {
  ttlSeconds: number;
  maxTtlSeconds: number;
  historyMessages: number;
  defaultPageSize: number;
  maxPageSize: number;
}

/**
 * Sessions as callers see them: ownership checks, limits and events on top of
 * whichever SessionStore is configured.
 */
export class SessionManager {
  constructor(
    private readonly store: SessionStore,
    private readonly events: EventBus,
    private readonly policy: SessionPolicy,
  ) {}

  async create(userId: string, agentId: string, metadata: Record<string, string>, ttlSeconds: number): Promise<SessionRecord> {
    if (!userId) throw invalidArgument("user_id", "is required");
    if (ttlSeconds > this.policy.maxTtlSeconds) {
      throw invalidArgument("ttl_seconds", `must be at most ${this.policy.maxTtlSeconds}`);
    }
    const session = await this.store.create({
      userId,
      agentId,
      metadata,
      ttlSeconds: ttlSeconds || this.policy.ttlSeconds,
    });
    this.events.publish({ type: "SESSION_CREATED", sessionId: session.id, userId, agentId, data: {} });
    return session;
  }

  /** The session, if it exists and `userId` (when given) owns it. */
  async get(sessionId: string, userId: string): Promise<SessionRecord> {
    if (!sessionId) throw invalidArgument("session_id", "is required");
    const session = await this.store.get(sessionId);
    if (!session) throw notFound("session", sessionId);
    if (userId && session.userId !== userId) {
      throw new ConnectError(`session "${sessionId}" belongs to another user`, Code.PermissionDenied);
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

  /** The last messages of the history, as the prompt takes them. */
  recent(session: SessionRecord): ChatMessage[] {
    const n = this.policy.historyMessages;
    return n === 0 ? [] : session.messages.slice(-n);
  }

  appendTurn(sessionId: string, messages: ChatMessage[]): Promise<number> {
    return this.store.appendMessages(sessionId, messages);
  }

  async saveCheckpoint(sessionId: string, userId: string, data: JsonObject, expectedVersion: number): Promise<CheckpointRecord> {
    if (expectedVersion < 0) throw invalidArgument("expected_version", "must not be negative");
    const session = await this.get(sessionId, userId);
    const checkpoint = await this.store.saveCheckpoint(sessionId, data, expectedVersion);
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
        : new ConnectError(`session "${sessionId}" has no checkpoints`, Code.NotFound);
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
