import type { ChatMessage } from "@qingyu/plugin-api";
import { SpanKind, type Tracer } from "@opentelemetry/api";
import type { CheckpointRecord, CreateSessionInput, GetOptions, Page, SaveCheckpointInput, SessionRecord, SessionStore } from "../sessions/types.ts";
import { failSpan } from "./span-iterable.ts";

/**
 * A SessionStore whose every operation is a CLIENT span (`session_store get`,
 * ...), a child of whatever stage asked. Used only when tracing is on.
 */
export class TracedSessionStore implements SessionStore {
  constructor(
    private readonly inner: SessionStore,
    private readonly tracer: Tracer,
    /** "memory", "redis", "postgresql" or "redis+postgresql", as db.system.name. */
    private readonly system: string,
  ) {}

  private run<T>(operation: string, sessionId: string | undefined, fn: () => Promise<T>): Promise<T> {
    const attributes: Record<string, string> = { "db.system.name": this.system, "db.operation.name": operation };
    if (sessionId) attributes["qingyu.session_id"] = sessionId;
    return this.tracer.startActiveSpan(`session_store ${operation}`, { kind: SpanKind.CLIENT, attributes }, async (span) => {
      try {
        return await fn();
      } catch (err) {
        failSpan(span, err);
        throw err;
      } finally {
        span.end();
      }
    });
  }

  create(input: CreateSessionInput): Promise<SessionRecord> {
    return this.run("create", undefined, () => this.inner.create(input));
  }
  get(sessionId: string, options: GetOptions): Promise<SessionRecord | undefined> {
    return this.run("get", sessionId, () => this.inner.get(sessionId, options));
  }
  list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>> {
    return this.run("list", undefined, () => this.inner.list(userId, pageSize, pageToken));
  }
  delete(sessionId: string): Promise<boolean> {
    return this.run("delete", sessionId, () => this.inner.delete(sessionId));
  }
  appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number> {
    return this.run("append_messages", sessionId, () => this.inner.appendMessages(sessionId, messages));
  }
  saveCheckpoint(sessionId: string, input: SaveCheckpointInput): Promise<CheckpointRecord> {
    return this.run("save_checkpoint", sessionId, () => this.inner.saveCheckpoint(sessionId, input));
  }
  getCheckpoint(sessionId: string, checkpointId: string): Promise<CheckpointRecord | undefined> {
    return this.run("get_checkpoint", sessionId, () => this.inner.getCheckpoint(sessionId, checkpointId));
  }
  listCheckpoints(sessionId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>> {
    return this.run("list_checkpoints", sessionId, () => this.inner.listCheckpoints(sessionId, pageSize, pageToken));
  }
  // Readiness pings every few seconds: not worth a span each.
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
