import type { Migration } from "../../../db/migrate.ts";

/** A table name as the `table` option accepts it: lower-case identifier, optionally `schema.table`. */
export const TABLE_PATTERN = /^(?:[a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$/;

/** The table name quoted part by part, so reserved words such as `user` work too. */
export function quoteTable(table: string): string {
  if (!TABLE_PATTERN.test(table)) throw new Error(`not a safe table name: ${JSON.stringify(table)}`);
  return table
    .split(".")
    .map((part) => `"${part}"`)
    .join(".");
}

/** The migration component of an audit table, as recorded in qingyu_schema_migrations. */
export function auditComponent(table: string): string {
  return `audit:${table}`;
}

/**
 * The table of the tool calls of the runs in `table`: `<table>_tool_calls` in
 * the same schema, its name cut so it stays within PostgreSQL's 63 bytes
 * (the option's pattern allows 63 for the run table itself).
 */
export function toolCallsTable(table: string): string {
  const parts = table.split(".");
  const bare = parts.pop()!;
  return [...parts, `${bare.slice(0, 52)}_tool_calls`].join(".");
}

/** The audit table's schema history; append new versions, never edit applied ones. */
export function auditMigrations(table: string): readonly Migration[] {
  const quoted = quoteTable(table);
  const bare = table.split(".").pop()!;
  // No schema in the index name: PostgreSQL puts an index in its table's schema.
  const index = `"${bare.slice(0, 54)}_time_idx"`;
  const tools = quoteTable(toolCallsTable(table));
  const toolsBare = toolCallsTable(table).split(".").pop()!;
  return [
    {
      version: 1,
      name: "create audit table",
      sql: `
        create table ${quoted} (
          id bigserial primary key,
          time timestamptz not null,
          call_id text not null,
          principal text,
          user_id text,
          agent_id text not null,
          session_id text,
          status text not null,
          code integer not null,
          input_tokens integer,
          output_tokens integer,
          duration_ms integer not null,
          input_sha256 text not null,
          input text,
          error text
        );
        create index ${index} on ${quoted} (time);`,
    },
    {
      version: 2,
      name: "create tool calls table",
      // One row per tool call; call_id joins it to its run's row. The arguments are kept only as their hash.
      sql: `
        create table ${tools} (
          id bigserial primary key,
          time timestamptz not null,
          call_id text not null,
          agent_id text not null,
          step integer not null,
          tool_call_id text not null,
          tool text not null,
          arguments_sha256 text not null,
          outcome text not null,
          duration_ms integer not null
        );
        create index "${toolsBare.slice(0, 54)}_call_idx" on ${tools} (call_id);
        create index "${toolsBare.slice(0, 54)}_time_idx" on ${tools} (time);`,
    },
  ];
}
