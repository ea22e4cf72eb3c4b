import { type ChatMessage, Code, ConnectError } from "@qingyu/plugin-api";
import pg from "pg";
import { storeUnavailable } from "../clients/shared.ts";
import { storedMessage } from "./messages.ts";
import { LISTED_OVERHEAD_BYTES } from "./types.ts";

// Times are the database's (so every process agrees), truncated to milliseconds
// as a JS Date holds them: a row's created_at then round-trips through a page token.
const NOW_MS = "date_trunc('milliseconds', now())";
const SESSION_COLUMNS = "s.id, s.user_id, s.agent_id, s.metadata, s.version, s.message_count, s.created_at, s.updated_at, s.expires_at";
const CHECKPOINT_COLUMNS = "c.id, c.version, c.parent_id, c.data, c.created_at";
// A message row r as the ChatMessage it stores: a key only for a field the message has
// (not null), so a message without tool use, or one from before them, is {role, content}.
const MESSAGE_JSON = `case
  when r.tool_calls is null and r.tool_call_id is null then json_build_object('role', r.role, 'content', r.content)
  when r.tool_call_id is null then json_build_object('role', r.role, 'content', r.content, 'toolCalls', r.tool_calls)
  when r.tool_calls is null then json_build_object('role', r.role, 'content', r.content, 'toolCallId', r.tool_call_id)
  else json_build_object('role', r.role, 'content', r.content, 'toolCalls', r.tool_calls, 'toolCallId', r.tool_call_id)
end`;
// A listed item's weight against the page byte budget, as bounds.ts sessionListedBytes counts it.
const SESSION_BYTES = `${LISTED_OVERHEAD_BYTES} + 36 + octet_length(s.user_id) + octet_length(s.agent_id) + octet_length(s.metadata::text)`;

// The advisory lock class (first key) of the per-user create locks; the second key is the user's hash.
const USER_LOCK_CLASS = 0x5153;

/** A number bound for inlining into SQL: an integer, or a thrown error. */
function integer(n: number): number {
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
  return n;
}

// The insert of a new session from SQL expressions for its values; with maxLive, only
// while the user holds fewer live sessions (counting no further than needed).
function createSql(q: string, user: string, agent: string, metadata: string, ttl: string, maxLive: number | null): string {
  const cap =
    maxLive === null
      ? ""
      : `where (select count(*) from (select 1 from ${q}.sessions where user_id = ${user} and expires_at > now() limit ${maxLive}) live) < ${maxLive}`;
  return `
      insert into ${q}.sessions as s (user_id, agent_id, metadata, ttl_seconds, created_at, updated_at, expires_at)
      select ${user}, ${agent}, ${metadata}, ${ttl}, t.at, t.at, t.at + ${ttl} * interval '1 second'
      from (select ${NOW_MS} as at) t
      ${cap}
      returning ${SESSION_COLUMNS}`;
}

/** The append statement's message parameters ($2..$5): one array per column, null where a message lacks the field. */
export function messageColumns(messages: readonly ChatMessage[]): [string[], string[], (string | null)[], (string | null)[]] {
  return [
    messages.map((m) => m.role),
    messages.map((m) => m.content),
    messages.map((m) => (m.toolCalls === undefined ? null : JSON.stringify(storedMessage(m).toolCalls))),
    messages.map((m) => m.toolCallId ?? null),
  ];
}

/** The store's statements for one schema; each is one round trip. */
export type SessionSql = ReturnType<typeof sessionSql>;

/** Builds the statements once per store, with the schema quoted. */
export function sessionSql(schema: string) {
  const q = pg.escapeIdentifier(schema);
  return {
    create: createSql(q, "$1::text", "$2::text", "$3::jsonb", "$4::int", null),

    /**
     * create under a per-user cap, as one simple-protocol query (one round trip, one
     * implicit transaction): the user's advisory lock, then the insert, which sees
     * every create that held the lock before it (each statement takes a fresh
     * snapshot), so concurrent creates of one user never pass the cap. No row: the
     * user already holds `maxLive` live sessions. Values are inlined as escaped
     * literals, since the simple protocol takes no parameters.
     */
    cappedCreate(userId: string, agentId: string, metadataJson: string, ttlSeconds: number, maxLive: number): string {
      const user = pg.escapeLiteral(userId);
      return `select pg_advisory_xact_lock(${USER_LOCK_CLASS}, hashtext(${user}));
        ${createSql(q, `${user}::text`, `${pg.escapeLiteral(agentId)}::text`, `${pg.escapeLiteral(metadataJson)}::jsonb`, `${integer(ttlSeconds)}::int`, integer(maxLive))}`;
    },

    // The row and its latest $2 messages, oldest first, aggregated in the same statement.
    get: `
      select ${SESSION_COLUMNS}, coalesce(m.messages, '[]'::json) as messages
      from ${q}.sessions s
      left join lateral (
        select json_agg(${MESSAGE_JSON} order by r.id) as messages
        from (select id, role, content, tool_calls, tool_call_id from ${q}.messages where session_id = s.id order by id desc limit $2::int) r
      ) m on true
      where s.id = $1::uuid and s.expires_at > now()`,

    // A primary-key lookup of the head's version alone: what the tiered store checks its copy against.
    version: `select version from ${q}.sessions where id = $1::uuid and expires_at > now()`,

    // $2 null: the first page. Otherwise rows strictly after the cursor (created_at, id).
    // fits: the row belongs on a page of $5 bytes (the first always does); a row that
    // does not comes without its metadata, only to say that more follow.
    list: `
      with page as (
        select ${SESSION_COLUMNS}, ${SESSION_BYTES} as bytes
        from ${q}.sessions s
        where s.user_id = $1::text and s.expires_at > now()
          and ($2::timestamptz is null or (s.created_at, s.id) < ($2::timestamptz, $3::uuid))
        order by s.created_at desc, s.id desc
        limit $4::int
      ), sized as (
        select page.*, row_number() over w = 1 or sum(bytes) over w <= $5::bigint as fits
        from page window w as (order by created_at desc, id desc)
      )
      select id, user_id, agent_id, case when fits then metadata end as metadata, version, message_count,
        created_at, updated_at, expires_at, fits
      from sized
      order by created_at desc, id desc`,

    // Deletes even an expired row (the sweeper would anyway) but reports only a live one.
    delete: `
      with gone as (delete from ${q}.sessions where id = $1::uuid returning expires_at > now() as live)
      select coalesce(bool_or(live), false) as live from gone`,

    // The UPDATE takes the row lock before the INSERT draws ids (the INSERT reads its
    // output), so concurrent turns get contiguous ids in version order.
    append: `
      with s as (
        update ${q}.sessions
        set version = version + 1,
            message_count = message_count + cardinality($2::text[]),
            updated_at = ${NOW_MS},
            expires_at = ${NOW_MS} + ttl_seconds * interval '1 second'
        where id = $1::uuid and expires_at > now()
        returning id, version, message_count, updated_at, expires_at
      ), ins as (
        insert into ${q}.messages (session_id, role, content, tool_calls, tool_call_id)
        select s.id, m.role, m.content, m.tool_calls, m.tool_call_id
        from s, unnest($2::text[], $3::text[], $4::json[], $5::text[]) with ordinality as m(role, content, tool_calls, tool_call_id, ord)
        order by m.ord
      )
      select version, message_count, updated_at, expires_at from s`,

    // cur locks the row and, having waited for a racing writer, sees its committed
    // values (unlike the statement snapshot): the version check, the parent and the
    // checkpoint's seq are decided on the latest row. Pruning by seq rather than by
    // counting rows matters because the DELETE sees only the snapshot: it cannot
    // count the checkpoints a racing writer committed meanwhile, but it need not.
    saveCheckpoint: `
      with cur as (
        select id, version, last_checkpoint_id from ${q}.sessions
        where id = $1::uuid and expires_at > now()
        for no key update
      ), upd as (
        update ${q}.sessions s
        set version = s.version + 1,
            checkpoint_count = s.checkpoint_count + 1,
            updated_at = ${NOW_MS},
            expires_at = ${NOW_MS} + s.ttl_seconds * interval '1 second',
            last_checkpoint_id = $2::uuid
        from cur
        where s.id = $1::uuid and s.id = cur.id and ($3::bigint < 0 or cur.version = $3::bigint)
        returning s.version, s.checkpoint_count as seq, s.message_count, s.updated_at, s.expires_at, cur.last_checkpoint_id as parent_id
      ), ins as (
        insert into ${q}.checkpoints (id, session_id, version, seq, parent_id, data, created_at)
        select $2::uuid, $1::uuid, upd.version, upd.seq, upd.parent_id, $4::jsonb, upd.updated_at from upd
      ), pruned as (
        delete from ${q}.checkpoints
        where session_id = $1::uuid and seq <= (select seq from upd) - $5::int
      )
      select cur.version as current_version, upd.version, upd.message_count, upd.updated_at, upd.expires_at, upd.parent_id
      from (select 1) one left join cur on true left join upd on true`,

    // No row: no live session. A row with a null id: no such checkpoint. $2 null = the latest.
    getCheckpoint: `
      select ${CHECKPOINT_COLUMNS}
      from ${q}.sessions s
      left join lateral (
        select * from ${q}.checkpoints
        where session_id = s.id and ($2::uuid is null or id = $2::uuid)
        order by version desc limit 1
      ) c on true
      where s.id = $1::uuid and s.expires_at > now()`,

    // As getCheckpoint, a page: versions below the cursor $2 (null = from the newest),
    // fits as in list, for a budget of $4 bytes.
    listCheckpoints: `
      select c.id, c.version, c.parent_id, case when c.fits then c.data end as data, c.created_at, c.fits
      from ${q}.sessions s
      left join lateral (
        select x.*, row_number() over w = 1 or sum(${LISTED_OVERHEAD_BYTES} + octet_length(x.data::text)) over w <= $4::bigint as fits
        from (
          select * from ${q}.checkpoints
          where session_id = s.id and ($2::bigint is null or version < $2::bigint)
          order by version desc limit $3::int
        ) x
        window w as (order by x.version desc)
      ) c on true
      where s.id = $1::uuid and s.expires_at > now()
      order by c.version desc`,

    // One bounded batch; SKIP LOCKED lets several processes sweep side by side
    // and never waits on a session a request is writing. Cascades to its rows.
    sweep: `
      with doomed as (
        select id from ${q}.sessions where expires_at <= now()
        order by expires_at limit $1::int
        for update skip locked
      )
      delete from ${q}.sessions s using doomed where s.id = doomed.id`,
  };
}

// SQLSTATEs meaning the server cannot serve us now: admin/crash shutdown, cannot
// connect now, too many connections, statement_timeout. Class 08 is checked apart.
const UNAVAILABLE_STATES = new Set(["57P01", "57P02", "57P03", "53300", "57014"]);
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "ECONNABORTED"]);
// node-postgres reports these as plain Errors without a code.
const NETWORK_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Query read timeout|not queryable|Cannot use a pool after calling end/i;

/** A failed query as a status: PostgreSQL unreachable or timing out is UNAVAILABLE; anything else (a bug) INTERNAL. */
export function toStoreError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (unreachable(err)) return storeUnavailable("session store", err, "postgres");
  const message = err instanceof Error ? err.message : String(err);
  return new ConnectError(`PostgreSQL session store: ${message}`, Code.Internal, undefined, undefined, err);
}

function unreachable(err: unknown): boolean {
  // Connecting to a name with several addresses fails with one error per address.
  if (err instanceof AggregateError && err.errors.some(unreachable)) return true;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && (code.startsWith("08") || UNAVAILABLE_STATES.has(code) || NETWORK_CODES.has(code))) return true;
  return err instanceof Error && NETWORK_MESSAGES.test(err.message);
}
