import pg from "pg";
import type { Migration } from "../db/migrate.ts";

/** The migrations component of the run tables in one schema. */
export const runsMigrationComponent = (schema: string) => `runs:${schema}`;

/**
 * The run tables in `schema` (the session store's), as versioned migrations.
 * Append new versions; never edit an applied one. Times are stored truncated to
 * milliseconds (by the statements), so a record's epoch ms, and a page token,
 * name a row exactly.
 */
export function runsMigrations(schema: string): Migration[] {
  const s = pg.escapeIdentifier(schema);
  return [
    {
      version: 1,
      name: "runs and their journals",
      sql: `
        -- json, not jsonb, for everything a caller or a model wrote: json keeps the text as
        -- sent (jsonb refuses a \\u0000 or lone surrogate escape) and is only read back whole.
        create table ${s}.runs (
          id uuid primary key,
          user_id text not null,
          agent_id text not null,
          session_id text not null,
          -- '' when the caller gave none: never deduplicated.
          idempotency_key text not null default '',
          status text not null check (status in ('queued', 'running', 'waiting', 'completed', 'failed', 'cancelled')),
          input json not null,
          settings json not null,
          create_time timestamptz not null,
          update_time timestamptz not null,
          -- The seq of the latest event, text deltas (never journaled) included.
          last_seq bigint not null default 0,
          result json,
          error json,
          pending json not null default '[]',
          owner text,
          -- The database's clock, so replicas whose clocks differ agree on when a lease ends.
          lease_until timestamptz,
          cancel_requested text check (cancel_requested in ('interrupt', 'rollback'))
        );
        -- A retried create of one user with one key finds the first run.
        create unique index runs_idempotency on ${s}.runs (user_id, idempotency_key) where idempotency_key <> '';
        -- A session's unfinished runs, oldest first: the per-session concurrency check.
        create index runs_session_active on ${s}.runs (session_id, create_time) where status in ('queued', 'running', 'waiting');
        -- Runs whose replica died: running or queued with a lease that ended.
        create index runs_orphans on ${s}.runs (status, lease_until);
        -- Listings, newest first in page-token order.
        create index runs_user_created on ${s}.runs (user_id, create_time desc, id desc);
        create index runs_session_created on ${s}.runs (session_id, create_time desc, id desc);

        create table ${s}.run_events (
          run_id uuid not null references ${s}.runs (id) on delete cascade,
          seq bigint not null,
          time timestamptz not null,
          event json not null,
          primary key (run_id, seq)
        );`,
    },
    {
      version: 2,
      name: "one active run per session",
      sql: `
        -- At most one run of a session running or waiting, whichever replica starts it: a second
        -- is refused by the database (SESSION_BUSY), or queued until the first ends.
        create unique index runs_one_active_per_session on ${s}.runs (session_id)
          where session_id <> '' and status in ('running', 'waiting');`,
    },
    {
      version: 3,
      name: "approvals expire",
      sql: `
        -- When the earliest undecided approval of a waiting run expires (its pending list holds
        -- each call's own expireAt): the sweep that refuses them reads this index, not every list.
        alter table ${s}.runs add column approval_expire_at timestamptz;
        create index runs_approval_expiry on ${s}.runs (approval_expire_at) where status = 'waiting';`,
    },
  ];
}
