/** What happened; the proto's EventType without its prefix. */
export type EventType =
  | "AGENT_STARTED"
  | "AGENT_COMPLETED"
  | "ERROR_OCCURRED"
  | "CHECKPOINT_SAVED"
  | "MIDDLEWARE_EXECUTED"
  | "SESSION_CREATED"
  | "SESSION_DELETED";

export const EVENT_TYPES: readonly EventType[] = [
  "AGENT_STARTED",
  "AGENT_COMPLETED",
  "ERROR_OCCURRED",
  "CHECKPOINT_SAVED",
  "MIDDLEWARE_EXECUTED",
  "SESSION_CREATED",
  "SESSION_DELETED",
];

/** One event as published on the bus. */
export interface RuntimeEvent {
  id: string;
  type: EventType;
  time: Date;
  agentId?: string;
  sessionId?: string;
  userId?: string;
  data: Record<string, unknown>;
}

/** What a publisher supplies; the bus stamps id and time. */
export type EventInit = Omit<RuntimeEvent, "id" | "time">;

/** A subscriber. Its result is awaited only to log a failure; publishers never wait on it. */
export type EventListener = (event: RuntimeEvent) => void | Promise<void>;

/** Publish/subscribe of runtime events. */
export interface EventBus {
  /** Delivers to every matching subscriber without waiting for any of them. */
  publish(event: EventInit): void;
  /** Subscribes to some types, or to "any"; returns the unsubscribe function. */
  subscribe(types: readonly EventType[] | "any", listener: EventListener): () => void;
  /** Whether anyone listens to this type (lets publishers skip building events). */
  hasSubscribers(type: EventType): boolean;
}
