import { Code, ConnectError } from "@qingyu/plugin-api";
import pg from "pg";
import { storeUnavailable } from "../clients/shared.ts";
import { toStoreError } from "../sessions/postgres-sql.ts";

// Times are the database's (so every replica agrees, on leases above all), truncated
// to milliseconds: a record's epoch ms then names the row exactly in a page token.
const NOW_MS = "date_trunc('milliseconds', now())";
const COLUMNS = `id, user_id, agent_id, session_id, idempotency_key, status, input, settings, create_time, update_time,
  last_seq, result, error, pending, owner, lease_until, cancel_requested`;
const UNFINISHED = "('queued', 'running', 'waiting')";
const FINISHED = "('completed', 'failed', 'cancelled')";
// Event parameters: one array per column (seq, epoch ms, the event's JSON text), rows from `src`.
const insertEvents = (q: string, src: string, seq: string, ms: string, event: string) => `
  insert into ${q}.run_events (run_id, seq, time, event)
  select ${src}.id, e.seq, to_timestamp(e.ms / 1000), e.event
  from ${src}, unnest(${seq}::bigint[], ${ms}::float8[], ${event}::json[]) as e(seq, ms, event)`;

/** The store's statements for one schema; each is one round trip. */
export type RunSql = ReturnType<typeof runSql>;

/** Builds the statements once per store, with the schema quoted. */
export function runSql(schema: string) {
  const q = pg.escapeIdentifier(schema);
  return {
    /**
     * The run and its first events, or (created false) the run the user's key already
     * names. No row: the key's run was committed after this statement's snapshot was
     * taken (a racing create), so it is read with `byKey`.
     */
    create: `
      with ins as (
        insert into ${q}.runs (id, user_id, agent_id, session_id, idempotency_key, status, input, settings,
          create_time, update_time, last_seq, owner, lease_until)
        select $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::json, $8::json, t.at, t.at, $9::bigint, $10::text,
          t.at + $11::float8 * interval '1 millisecond'
        from (select ${NOW_MS} as at) t
        on conflict (user_id, idempotency_key) where idempotency_key <> '' do nothing
        returning ${COLUMNS}
      ), ev as (${insertEvents(q, "ins", "$12", "$13", "$14")})
      select true as created, * from ins
      union all
      select false, ${COLUMNS} from ${q}.runs
      where $5::text <> '' and user_id = $2::text and idempotency_key = $5::text and not exists (select 1 from ins)`,

    byKey: `select ${COLUMNS} from ${q}.runs where user_id = $1::text and idempotency_key = $2::text`,

    get: `select ${COLUMNS} from ${q}.runs where id = $1::uuid`,

    // Null filters match every run; $4 null: the first page, else rows strictly after the cursor.
    list: `
      select ${COLUMNS} from ${q}.runs
      where ($1::text is null or user_id = $1::text) and ($2::text is null or session_id = $2::text)
        and ($3::text[] is null or status = any($3::text[]))
        and ($4::timestamptz is null or (create_time, id) < ($4::timestamptz, $5::uuid))
      order by create_time desc, id desc
      limit $6::int`,

    /**
     * The owner guard, the run's update and its events in one statement: the events
     * are inserted from the UPDATE's row, so when another replica owns the run (or it
     * is gone) nothing is written at all. A seq already journaled fails the whole statement.
     */
    append: `
      with upd as (
        update ${q}.runs set
          last_seq = greatest(last_seq, $3::bigint),
          update_time = ${NOW_MS},
          status = coalesce($4::text, status),
          result = coalesce($5::json, result),
          error = coalesce($6::json, error),
          pending = coalesce($7::json, pending),
          approval_expire_at = case when $7::json is null then approval_expire_at else to_timestamp($12::float8 / 1000) end,
          owner = case when $8::boolean then null else owner end,
          lease_until = case when $8::boolean then null else lease_until end
        where id = $1::uuid and owner = $2::text
        returning id
      ), ins as (${insertEvents(q, "upd", "$9", "$10", "$11")})
      select count(*)::int as owned from upd`,

    events: `
      select seq, time, event from ${q}.run_events
      where run_id = $1::uuid and seq > $2::bigint
      order by seq limit $3::int`,

    active: `select ${COLUMNS} from ${q}.runs where session_id = $1::text and status in ${UNFINISHED} order by create_time, id`,

    // Under READ COMMITTED a racing acquire waits for the row and re-checks the guard
    // on the winner's version of it, so exactly one of them takes a free run.
    acquire: `
      update ${q}.runs set owner = $2::text, lease_until = ${NOW_MS} + $3::float8 * interval '1 millisecond'
      where id = $1::uuid and status in ${UNFINISHED}
        and (owner is null or owner = $2::text or lease_until is null or lease_until <= now())
      returning id`,

    renew: `
      update ${q}.runs set lease_until = ${NOW_MS} + $3::float8 * interval '1 millisecond'
      where owner = $1::text and id = any($2::uuid[])
      returning id, cancel_requested`,

    orphans: `
      select ${COLUMNS} from ${q}.runs
      where status in ('running', 'queued') and (lease_until is null or lease_until <= now())
      order by create_time, id limit $1::int`,

    // The first cancel asked for is the one the owner acts on.
    requestCancel: `
      update ${q}.runs set cancel_requested = coalesce(cancel_requested, $2::text)
      where id = $1::uuid and status in ${UNFINISHED}
      returning id`,

    // A decision (or an expiry): the row locked while its pending list is read, changed in code, and written back.
    lockPending: `select status, pending from ${q}.runs where id = $1::uuid for update`,
    setPending: `
      update ${q}.runs set pending = $2::json, update_time = ${NOW_MS},
        status = case when $3::boolean then 'running' else status end,
        approval_expire_at = to_timestamp($4::float8 / 1000)
      where id = $1::uuid`,

    // Waiting runs with an undecided approval expired at $1 (epoch ms), soonest expired first.
    expiring: `
      select id from ${q}.runs
      where status = 'waiting' and approval_expire_at <= to_timestamp($1::float8 / 1000)
      order by approval_expire_at, id limit $2::int`,

    // Cascades to the journals.
    prune: `delete from ${q}.runs where status in ${FINISHED} and update_time < to_timestamp($1::float8 / 1000)`,
  };
}

/** A failed query as a status: PostgreSQL unreachable or timing out is UNAVAILABLE (STORE_UNAVAILABLE); anything else (a bug) INTERNAL. */
export function toRunStoreError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  // The session store's classification of what "unreachable" means, in the run store's words.
  if (toStoreError(err).code === Code.Unavailable) return storeUnavailable("run store", err, "postgres");
  const message = err instanceof Error ? err.message : String(err);
  return new ConnectError(`PostgreSQL run store: ${message}`, Code.Internal, undefined, undefined, err);
}
