import type { ChatMessage } from "../providers/types.ts";

export type JsonObject = { [key: string]: JsonValue };
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A conversation owned by one user and bound to one agent. */
export interface SessionRecord {
  id: string;
  userId: string;
  agentId: string;
  createTime: Date;
  updateTime: Date;
  expireTime: Date;
  metadata: Record<string, string>;
  /** Incremented by every write: appended turn or saved checkpoint. */
  version: number;
  messages: ChatMessage[];
}

/** A saved snapshot of agent state within a session. */
export interface CheckpointRecord {
  id: string;
  sessionId: string;
  data: JsonObject;
  createTime: Date;
  parentId: string;
  /** The session version this save produced. */
  version: number;
}

export interface CreateSessionInput {
  userId: string;
  agentId: string;
  metadata: Record<string, string>;
  /** Seconds; every write extends the session by this much. */
  ttlSeconds: number;
}

/** One page of a newest-first listing. */
export interface Page<T> {
  items: T[];
  /** Opaque; empty when there is no next page. */
  nextPageToken: string;
}

/**
 * Where sessions and checkpoints live. Every method throws a ConnectError with
 * NOT_FOUND for a missing (or expired) session, ABORTED for a stale
 * expected version, INVALID_ARGUMENT for a bad page token.
 */
export interface SessionStore {
  create(input: CreateSessionInput): Promise<SessionRecord>;
  /** The session with its messages, or undefined when missing or expired. */
  get(sessionId: string): Promise<SessionRecord | undefined>;
  /** A user's sessions, newest first, without messages. */
  list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>>;
  /** Deletes the session and its checkpoints; false when there was none. */
  delete(sessionId: string): Promise<boolean>;
  /** Appends messages atomically with the version bump; returns the new version. */
  appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number>;
  /** expectedVersion 0 = no check. */
  saveCheckpoint(sessionId: string, data: JsonObject, expectedVersion: number): Promise<CheckpointRecord>;
  /** checkpointId empty = the latest. */
  getCheckpoint(sessionId: string, checkpointId: string): Promise<CheckpointRecord | undefined>;
  listCheckpoints(sessionId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>>;
  close(): Promise<void>;
}
