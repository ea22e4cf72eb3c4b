import pg from "pg";
import type { Migration } from "../db/migrate.ts";

/** The migrations component of the session tables in one schema. */
export const migrationComponent = (schema: string) => `sessions:${schema}`;

/**
 * The session tables in `schema`, as versioned migrations. Append new versions;
 * never edit an applied one. Timestamps are stored truncated to milliseconds
 * (by the statements) so that a JS Date, and so a page token, names a row exactly.
 */
export function sessionMigrations(schema: string): Migration[] {
  const s = pg.escapeIdentifier(schema);
  return [
    {
      version: 1,
      name: "sessions, messages and checkpoints",
      sql: `
        create table ${s}.sessions (
          id uuid primary key default gen_random_uuid(),
          user_id text not null,
          agent_id text not null,
          metadata jsonb not null default '{}',
          version bigint not null default 0,
          message_count integer not null default 0,
          ttl_seconds integer not null,
          created_at timestamptz not null,
          updated_at timestamptz not null,
          expires_at timestamptz not null,
          -- The parent of the next checkpoint, read under the row lock so racing saves chain correctly.
          last_checkpoint_id uuid,
          -- Checkpoints ever saved: numbers them gap-free (seq), so pruning needs no count.
          checkpoint_count bigint not null default 0
        );
        -- Listings: one user's sessions newest first, in page-token order.
        create index sessions_user_created on ${s}.sessions (user_id, created_at desc, id desc);
        -- The sweeper: expired sessions oldest first.
        create index sessions_expires on ${s}.sessions (expires_at);

        create table ${s}.messages (
          session_id uuid not null references ${s}.sessions (id) on delete cascade,
          -- Assigned in append order under the session's row lock, so it orders the history.
          id bigserial not null,
          role text not null,
          content text not null,
          primary key (session_id, id)
        );

        create table ${s}.checkpoints (
          id uuid primary key,
          session_id uuid not null references ${s}.sessions (id) on delete cascade,
          version bigint not null,
          -- 1, 2, 3... within the session (versions have gaps: appends bump them too).
          seq bigint not null,
          parent_id uuid,
          data jsonb not null,
          created_at timestamptz not null,
          unique (session_id, version)
        );`,
    },
    // Unused since the tiered store checks every copy's version against the session row before
    // serving it. Not dropped: replicas of the release before may still write to it in a rolling deploy.
    {
      version: 2,
      name: "hot copies that may be stale",
      sql: `
        -- redis+postgres: sessions written while their Redis copy could not be marked.
        -- No foreign key: a deleted session's copy must be retired too.
        create table ${s}.hot_suspects (
          -- The Redis key prefix of the copies: deployments may share a schema, not their Redis.
          key_prefix text not null,
          session_id uuid not null,
          -- Epoch ms, so a client clears exactly the rows it read.
          since_ms bigint not null,
          primary key (key_prefix, session_id)
        );`,
    },
    {
      version: 3,
      name: "live sessions per user",
      sql: `
        -- The per-user cap counts a user's unexpired sessions at every create.
        create index sessions_user_expires on ${s}.sessions (user_id, expires_at);`,
    },
    {
      version: 4,
      name: "tool calls and tool results in messages",
      sql: `
        -- Null for every message before tool use, and for a message without these fields:
        -- reads then leave the keys out, so those read back as {role, content}.
        -- json, not jsonb: it keeps the text as sent (jsonb refuses a \\u0000 or lone
        -- surrogate escape), and is only ever read back whole.
        alter table ${s}.messages
          add column tool_calls json,
          add column tool_call_id text;`,
    },
  ];
}
