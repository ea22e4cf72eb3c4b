import { type AgentContext, type AgentRunResult, Code, ConnectError, definePlugin, type RunEvent, type ToolCallRecord } from "@qingyu/plugin-api";
import { createHash } from "node:crypto";
import { z } from "zod";
import type { Pool } from "pg";
import { runMigrations } from "../../../db/migrate.ts";
import { abortReason, codeName, toConnectError } from "../../../errors.ts";
import { auditComponent, auditMigrations, TABLE_PATTERN, toolCallsTable } from "./migrations.ts";
import { AuditWriter, RUN_COLUMNS, TOOL_CALL_COLUMNS, type AuditRow, type ToolCallRow } from "./writer.ts";

const Options = z
  .strictObject({
    /** Table the rows go to, created at start-up: `name` or `schema.name` (the schema must exist). */
    table: z.string().regex(TABLE_PATTERN, "must be a lower-case SQL identifier (letters, digits, _), optionally schema-qualified").default("qingyu_audit"),
    /** Store the raw task text; off by default, when only its SHA-256 is kept. */
    recordInput: z.boolean().default(false),
    /** Rows per INSERT; a full batch is written at once. */
    batchSize: z.int().min(1).max(1000).default(100),
    /** Longest a row waits in memory before it is written. */
    flushIntervalMs: z.int().min(10).max(60_000).default(200),
    /** Rows held while PostgreSQL is unreachable; beyond it the oldest are dropped and logged in full. */
    maxQueue: z.int().min(1).default(10_000),
  })
  .prefault({});

/**
 * One PostgreSQL row per agent call: who, what, outcome, tokens, duration;
 * and one row per tool call in `<table>_tool_calls`: tool, SHA-256 of the
 * arguments, outcome, duration, step, ids. Place it outermost: it records
 * only what the middleware inside it decide (and the tool calls whose
 * results they let through).
 */
export default definePlugin({
  name: "audit",
  kind: "middleware",
  configSchema: Options,
  async setup(host) {
    const { options, logger } = host;
    const { table } = options;
    let pool: Pool;
    try {
      pool = host.postgres();
      await runMigrations(pool, auditComponent(table), auditMigrations(table));
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new Error(`audit: cannot prepare table "${table}": ${reason}`, { cause: err });
    }
    const writer = new AuditWriter<AuditRow>(pool, table, logger, options, RUN_COLUMNS);
    const toolWriter = new AuditWriter<ToolCallRow>(pool, toolCallsTable(table), logger, options, TOOL_CALL_COLUMNS);
    return {
      name: "audit",
      async *process(ctx, next): AsyncIterable<RunEvent> {
        // The task as the client sent it, before inner middleware rewrite it.
        const task = ctx.task;
        let result: AgentRunResult | undefined;
        let outcome: ConnectError | "ok" | undefined;
        try {
          for await (const event of next()) {
            if (event.type === "completed") result = event.result;
            // The events, not the toolResult hook: every call has one, also those a limit skipped before they ran.
            else if (event.type === "tool_result") toolWriter.enqueue(toolCallRow(ctx, event.record));
            yield event;
          }
          outcome = "ok";
        } catch (err) {
          outcome = toConnectError(err);
          throw err;
        } finally {
          // Neither finished nor failed: the consumer stopped reading (client cancel, deadline).
          outcome ??= ctx.signal.aborted ? abortReason(ctx.signal) : new ConnectError("the client stopped reading the stream", Code.Canceled);
          writer.enqueue(auditRow(ctx, task, outcome, result, options.recordInput));
        }
      },
      dispose: async () => {
        await Promise.all([writer.dispose(), toolWriter.dispose()]);
      },
    };
  },
});

/** The row for one finished call; principal and user are read now, after auth inside has set them. */
function auditRow(ctx: AgentContext, task: string, outcome: ConnectError | "ok", result: AgentRunResult | undefined, recordInput: boolean): AuditRow {
  const failed = outcome === "ok" ? undefined : outcome;
  return {
    time: new Date(ctx.startTime),
    call_id: ctx.callId,
    principal: ctx.principal?.id ?? null,
    user_id: ctx.userId || null,
    agent_id: ctx.agentId,
    session_id: ctx.sessionId || null,
    status: failed ? codeName(failed.code) : "OK",
    code: failed ? failed.code : 0,
    input_tokens: result?.usage.inputTokens ?? null,
    output_tokens: result?.usage.outputTokens ?? null,
    duration_ms: Date.now() - ctx.startTime,
    input_sha256: createHash("sha256").update(task, "utf8").digest("hex"),
    input: recordInput ? task : null,
    error: failed ? failed.rawMessage : null,
  };
}

/** The row for one tool call's outcome: the arguments only as their hash. */
function toolCallRow(ctx: AgentContext, record: ToolCallRecord): ToolCallRow {
  return {
    time: new Date(),
    call_id: ctx.callId,
    agent_id: ctx.agentId,
    step: record.step,
    tool_call_id: record.id,
    tool: record.name,
    arguments_sha256: createHash("sha256").update(record.arguments, "utf8").digest("hex"),
    outcome: record.outcome,
    duration_ms: Math.round(record.durationMs),
  };
}
