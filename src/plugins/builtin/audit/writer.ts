import type pg from "pg";
import type { PluginLogger } from "@qingyu/plugin-api";
import { quoteTable } from "./migrations.ts";

/** One audit row, keyed by column name so a logged row can be replayed as is. */
export interface AuditRow {
  time: Date;
  call_id: string;
  principal: string | null;
  user_id: string | null;
  agent_id: string;
  session_id: string | null;
  status: string;
  code: number;
  input_tokens: number | null;
  output_tokens: number | null;
  duration_ms: number;
  input_sha256: string;
  input: string | null;
  error: string | null;
}

/** One tool call of an audited run: never its arguments, only their hash. */
export interface ToolCallRow {
  /** When the call ended. */
  time: Date;
  /** The run's call id (the run table's call_id). */
  call_id: string;
  agent_id: string;
  step: number;
  /** The model's id for the tool call. */
  tool_call_id: string;
  tool: string;
  /** SHA-256 (hex) of the arguments' JSON text as the tool got it (or was refused with). */
  arguments_sha256: string;
  outcome: string;
  duration_ms: number;
}

/** The columns of a run row, in insert order. */
export const RUN_COLUMNS = [
  "time",
  "call_id",
  "principal",
  "user_id",
  "agent_id",
  "session_id",
  "status",
  "code",
  "input_tokens",
  "output_tokens",
  "duration_ms",
  "input_sha256",
  "input",
  "error",
] as const satisfies readonly (keyof AuditRow)[];

/** The columns of a tool-call row, in insert order. */
export const TOOL_CALL_COLUMNS = [
  "time",
  "call_id",
  "agent_id",
  "step",
  "tool_call_id",
  "tool",
  "arguments_sha256",
  "outcome",
  "duration_ms",
] as const satisfies readonly (keyof ToolCallRow)[];

/** How the writer batches. */
export interface WriterSettings {
  /** Rows per INSERT; reaching it flushes at once. */
  batchSize: number;
  /** Longest a row waits before a flush. */
  flushIntervalMs: number;
  /** Rows held while PostgreSQL is unreachable; beyond it the oldest are dropped (and logged). */
  maxQueue: number;
  /** Longest `dispose` waits for the last rows. */
  disposeTimeoutMs?: number;
}

// While inserts fail, retries back off up to this, so a dead database is not hammered.
const MAX_RETRY_DELAY_MS = 5_000;

/**
 * A bounded queue of audit rows written in multi-row INSERTs, off the call's
 * path: `enqueue` never waits and never throws. Rows whose insert fails stay
 * queued for the next flush; rows that must be given up are logged at error
 * level in full, so nothing is lost silently. One writer per table.
 */
export class AuditWriter<Row extends object = AuditRow> {
  private queue: Row[] = [];
  private inFlight: Row[] = [];
  private flushing: Promise<boolean> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private disposed = false;
  private readonly quoted: string;

  constructor(
    private readonly pool: pg.Pool,
    private readonly table: string,
    private readonly logger: PluginLogger,
    private readonly settings: WriterSettings,
    /** The row's fields that are written, in this order. */
    private readonly columns: readonly (keyof Row & string)[],
  ) {
    this.quoted = quoteTable(table);
  }

  /** Queues a row; flushes now when a batch is full, else soon. */
  enqueue(row: Row): void {
    this.queue.push(row);
    this.trim();
    if (this.disposed) void this.drainLate();
    else if (this.queue.length >= this.settings.batchSize && this.failures === 0) void this.flush();
    else this.schedule();
  }

  /** Writes one batch (or waits for the one in progress); true when it was written. Never rejects. */
  flush(): Promise<boolean> {
    this.flushing ??= this.writeBatch().finally(() => {
      this.flushing = undefined;
      this.afterFlush();
    });
    return this.flushing;
  }

  /** Stops the timer and writes what is queued, waiting at most `disposeTimeoutMs`; logs what is left. */
  async dispose(): Promise<void> {
    this.disposed = true;
    this.clearTimer();
    const deadline = Date.now() + (this.settings.disposeTimeoutMs ?? 5_000);
    while (this.queue.length > 0 || this.flushing) {
      const outcome = await this.within(this.flush(), deadline - Date.now());
      if (outcome === "timeout") {
        for (const row of this.inFlight) this.logger.error({ table: this.table, row }, "audit writer closed: row may not have been written");
        break;
      }
      if (!outcome) break;
    }
    this.giveUp();
  }

  /** A call that outlived dispose (a reload drains old calls): write its row now, or log it. */
  private async drainLate(): Promise<void> {
    while (this.queue.length > 0 || this.flushing) {
      if (!(await this.flush())) break;
    }
    this.giveUp();
  }

  private async writeBatch(): Promise<boolean> {
    if (this.queue.length === 0) return true;
    const batch = this.queue.splice(0, this.settings.batchSize);
    this.inFlight = batch;
    try {
      await this.pool.query(
        this.insertSql(batch.length),
        batch.flatMap((row) => this.columns.map((c) => row[c])),
      );
      if (this.failures > 0) this.logger.info({ table: this.table }, "audit rows are being written again");
      this.failures = 0;
      return true;
    } catch (err) {
      this.failures++;
      this.queue.unshift(...batch);
      this.trim();
      this.logger.warn(
        { table: this.table, queued: this.queue.length, err: err instanceof Error ? err.message : String(err) },
        "audit insert failed; rows kept for retry",
      );
      return false;
    } finally {
      this.inFlight = [];
    }
  }

  private afterFlush(): void {
    if (this.disposed || this.queue.length === 0) return;
    // A backlog drains batch after batch; a partial batch waits for the timer.
    if (this.failures === 0 && this.queue.length >= this.settings.batchSize) void this.flush();
    else this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.disposed) return;
    const delay = Math.min(this.settings.flushIntervalMs * 2 ** this.failures, Math.max(MAX_RETRY_DELAY_MS, this.settings.flushIntervalMs));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
    this.timer.unref?.();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Drops the oldest rows beyond maxQueue, logging each in full. */
  private trim(): void {
    const excess = this.queue.length - this.settings.maxQueue;
    if (excess <= 0) return;
    for (const row of this.queue.splice(0, excess)) {
      this.logger.error({ table: this.table, row }, "audit queue full: oldest row dropped");
    }
  }

  /** Logs every queued row in full and forgets it: the writer will not try again. */
  private giveUp(): void {
    for (const row of this.queue) this.logger.error({ table: this.table, row }, "audit writer closed: row not written");
    this.queue = [];
  }

  private async within(work: Promise<boolean>, ms: number): Promise<boolean | "timeout"> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(ms, 0));
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private insertSql(rows: number): string {
    const width = this.columns.length;
    const values = Array.from({ length: rows }, (_, r) => `(${this.columns.map((_, c) => `$${r * width + c + 1}`).join(", ")})`);
    return `insert into ${this.quoted} (${this.columns.join(", ")}) values ${values.join(", ")}`;
  }
}
