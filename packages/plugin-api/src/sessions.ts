import type { ChatMessage } from "./provider.ts";

/** Any JSON object (a checkpoint's data). */
export type JsonObject = { [key: string]: JsonValue };
/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A conversation owned by one user and bound to one agent, as a middleware reads it. */
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
  /** The latest messages, oldest first. */
  messages: ChatMessage[];
  /** How many messages the session holds in all. */
  messageCount: number;
}
