import type { ChatMessage, JsonObject, SessionRecord } from "@qingyu/plugin-api";

// Middleware read sessions too, so the record's type lives in the plugin contract.
export type { JsonObject, JsonValue, SessionRecord } from "@qingyu/plugin-api";

/** How much of a session a read brings back. */
export interface GetOptions {
  /** The latest this many messages; 0 reads none (an ownership check, a checkpoint call). */
  messages: number;
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
  /**
   * Most live (unexpired) sessions the user may hold, this one included:
   * RESOURCE_EXHAUSTED beyond it, decided by the store as atomically as it can.
   * Absent: no cap.
   */
  maxLive?: number;
}

/** Largest page a listing builds by default, in bytes (listedBytes): well under the 4 MiB message limit. */
export const DEFAULT_PAGE_BYTES = 1024 * 1024;

/**
 * What one listed item counts against a page's byte budget: the sizes of its
 * caller-sized fields (for a session its ids and its metadata as JSON, for a
 * checkpoint its data as JSON) plus this for the fixed-size rest. An estimate
 * of the encoded size that every store computes alike, not the exact wire size.
 */
export const LISTED_OVERHEAD_BYTES = 128;

/** One page of a newest-first listing. */
export interface Page<T> {
  items: T[];
  /** Opaque; empty when there is no next page. */
  nextPageToken: string;
}

/** A checkpoint to save. */
export interface SaveCheckpointInput {
  data: JsonObject;
  /** -1 = no check; otherwise (0 included) the session's current version, or ABORTED. */
  expectedVersion: number;
  /** Retention: after saving, only the latest this many checkpoints of the session remain. */
  keep: number;
}

/**
 * Where sessions and checkpoints live. Every method throws a ConnectError:
 * NOT_FOUND for a missing (or expired) session, ABORTED for a stale expected
 * version, INVALID_ARGUMENT for a bad page token, RESOURCE_EXHAUSTED for a
 * create past the user's live sessions (maxLive), UNAVAILABLE when the backing
 * service cannot be reached in time. One call is one round trip to each
 * backing service wherever the method allows it (get, appendMessages,
 * saveCheckpoint): a conversation turn must not cost more as history grows.
 */
export interface SessionStore {
  create(input: CreateSessionInput): Promise<SessionRecord>;
  /** The session with its latest messages, or undefined when missing or expired. */
  get(sessionId: string, options: GetOptions): Promise<SessionRecord | undefined>;
  /**
   * A user's sessions, newest first, without messages: at most pageSize, and
   * fewer when they reach the store's page byte budget (at least one).
   */
  list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>>;
  /** Deletes the session and its checkpoints; false when there was none. */
  delete(sessionId: string): Promise<boolean>;
  /** Appends messages atomically with the version bump and TTL refresh; returns the new version. */
  appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number>;
  /** Saves atomically with the version bump; the checkpoint's parent is the previous latest. */
  saveCheckpoint(sessionId: string, input: SaveCheckpointInput): Promise<CheckpointRecord>;
  /** checkpointId empty = the latest; undefined when there is no such checkpoint (NOT_FOUND when no session). */
  getCheckpoint(sessionId: string, checkpointId: string): Promise<CheckpointRecord | undefined>;
  /** Newest first; pages bounded by items and bytes as list's are. */
  listCheckpoints(sessionId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>>;
  /** Resolves when the backing service answers; rejects (UNAVAILABLE) when it does not. For readiness. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
