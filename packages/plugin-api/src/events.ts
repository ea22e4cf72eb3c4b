/** What happened; the proto's EventType without its prefix. */
export type EventType =
  | "AGENT_STARTED"
  | "AGENT_COMPLETED"
  | "ERROR_OCCURRED"
  | "CHECKPOINT_SAVED"
  | "MIDDLEWARE_EXECUTED"
  | "SESSION_CREATED"
  | "SESSION_DELETED"
  | "TOOL_CALLED"
  | "TOOL_COMPLETED"
  | "RUN_STARTED"
  | "RUN_WAITING"
  | "RUN_COMPLETED"
  | "RUN_FAILED"
  | "RUN_CANCELLED";

/** Every event type, in the proto's order. */
export const EVENT_TYPES: readonly EventType[] = [
  "AGENT_STARTED",
  "AGENT_COMPLETED",
  "ERROR_OCCURRED",
  "CHECKPOINT_SAVED",
  "MIDDLEWARE_EXECUTED",
  "SESSION_CREATED",
  "SESSION_DELETED",
  "TOOL_CALLED",
  "TOOL_COMPLETED",
  "RUN_STARTED",
  "RUN_WAITING",
  "RUN_COMPLETED",
  "RUN_FAILED",
  "RUN_CANCELLED",
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
  /** The W3C traceparent of the call that published it, so a handler's span can link to that call. */
  traceparent?: string;
  /** Set on events that came from another server process through a shared bus. */
  remote?: boolean;
}

/** What a publisher supplies; the bus stamps id and time (and the trace context, when tracing is on). */
export type EventInit = Omit<RuntimeEvent, "id" | "time" | "remote">;

/** How a subscription reaches across server processes. */
export interface SubscribeOptions {
  /**
   * Also receive events other server processes published, when the bus is
   * shared (Redis). For watchers; handlers that act on an event (webhooks,
   * alerts) leave it off, or every replica would act on every event.
   */
  remote?: boolean;
}

/** A subscriber. Its result is awaited only to log a failure; publishers never wait on it. */
export type EventListener = (event: RuntimeEvent) => void | Promise<void>;

/** Publish/subscribe of runtime events. */
export interface EventBus {
  /** Delivers to every matching subscriber without waiting for any of them. */
  publish(event: EventInit): void;
  /** Subscribes to some types, or to "any"; returns the unsubscribe function. */
  subscribe(types: readonly EventType[] | "any", listener: EventListener, options?: SubscribeOptions): () => void;
  /** Whether anyone may listen to this type, here or on another process (lets publishers skip building events). */
  hasSubscribers(type: EventType): boolean;
  /** Stops whatever the bus runs in the background (a shared bus's reader). */
  close?(): Promise<void>;
}

/** A subscriber to runtime events; runs isolated from the call and other handlers. */
export interface EventHandler {
  types: readonly EventType[] | "any";
  handle(event: RuntimeEvent): void | Promise<void>;
  /** Releases what setup acquired; called at shutdown and once a reload has replaced it. */
  dispose?(): void | Promise<void>;
}
