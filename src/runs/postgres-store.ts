import { ConnectError } from "@qingyu/plugin-api";
import pg from "pg";
import type { Logger } from "pino";
import { runMigrations } from "../db/migrate.ts";
import { decodePageToken, encodePageToken } from "../sessions/page-token.ts";
import type { Page } from "../sessions/types.ts";
import { journaled, notOwned, sessionBusy } from "./memory-store.ts";
import { expirePending, nextExpiry } from "./parked.ts";
import { decidePending } from "./pending.ts";
import { runsMigrationComponent, runsMigrations } from "./postgres-migrations.ts";
import { runSql, toRunStoreError, type RunSql } from "./postgres-sql.ts";
import type { CancelMode, Decision, NewRun, PendingCall, Renewal, RunFilter, RunRecord, RunStatus, RunStore, RunUpdate, SequencedEvent } from "./types.ts";

/** Settings of a PostgreSQL run store. */
export interface PostgresRunStoreSettings {
  /** The schema holding the run tables: the session store's (it must exist; migrations create tables, not the schema). */
  schema: string;
  log: Logger;
}

// Run ids are the runtime's randomUUID, lower case (as page tokens hold them); anything else names no run.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Row = Record<string, unknown>;

/**
 * The runs journal in PostgreSQL, shared by every replica. Every write is one
 * statement (create, append with its owner guard, acquire, renew); leases are
 * reckoned by the database's clock, so replicas whose clocks differ agree.
 */
export class PostgresRunStore implements RunStore {
  private readonly sql: RunSql;

  /** Assumes the schema is migrated: use open() unless it is known to be. */
  constructor(
    private readonly pool: pg.Pool,
    settings: PostgresRunStoreSettings,
  ) {
    this.sql = runSql(settings.schema);
  }

  /** Checks the schema exists, applies pending migrations (safe when replicas start together), then opens the store. */
  static async open(pool: pg.Pool, settings: PostgresRunStoreSettings): Promise<PostgresRunStore> {
    const { schema, log } = settings;
    let found: pg.QueryResult;
    try {
      found = await pool.query("select 1 from pg_namespace where nspname = $1", [schema]);
    } catch (err) {
      throw toRunStoreError(err);
    }
    if (found.rowCount === 0) {
      throw new Error(
        `PostgreSQL schema "${schema}" does not exist: create it (create schema ${pg.escapeIdentifier(schema)}) ` +
          "or name an existing one; the run migrations create tables in it, not the schema itself",
      );
    }
    const applied = await runMigrations(pool, runsMigrationComponent(schema), runsMigrations(schema));
    if (applied > 0) log.info({ schema, applied }, "run tables migrated");
    return new PostgresRunStore(pool, settings);
  }

  async create(run: NewRun, first: readonly SequencedEvent[]): Promise<{ run: RunRecord; created: boolean }> {
    if (!UUID.test(run.id)) throw toRunStoreError(new Error(`run id "${run.id}" is not a lower-case UUID`));
    // The caller's lease end, by its own clock, as a length: the database's clock ends it.
    const leaseMs = run.leaseMs ?? null;
    const values = [
      run.id,
      run.userId,
      run.agentId,
      run.sessionId,
      run.idempotencyKey,
      run.status,
      JSON.stringify(run.input),
      JSON.stringify(run.settings),
      first.at(-1)?.seq ?? 0,
      run.owner ?? null,
      leaseMs,
      ...eventColumns(first),
    ];
    const row = (await this.query(this.sql.create, values).catch((err: unknown) => this.busyOr(err, run.sessionId)))[0];
    if (row) return { run: toRecord(row), created: row.created === true };
    // The key's run committed after the statement's snapshot: it is there now.
    const raced = (await this.query(this.sql.byKey, [run.userId, run.idempotencyKey]))[0];
    if (!raced) throw toRunStoreError(new Error(`create of run "${run.id}" neither inserted nor found its idempotency key`));
    return { run: toRecord(raced), created: false };
  }

  /** The session's one-active-run index refused a write: SESSION_BUSY naming the run that holds it; any other error as is. */
  private async busyOr(err: unknown, sessionId: string): Promise<never> {
    const cause = err instanceof ConnectError ? err.cause : err;
    if ((cause as { code?: string; constraint?: string })?.constraint === "runs_one_active_per_session") {
      const holder = (await this.active(sessionId)).find((r) => r.status === "running" || r.status === "waiting");
      throw sessionBusy(sessionId, holder?.id);
    }
    throw err;
  }

  async get(runId: string): Promise<RunRecord | undefined> {
    if (!UUID.test(runId)) return undefined;
    const row = (await this.query(this.sql.get, [runId]))[0];
    return row && toRecord(row);
  }

  async list(filter: RunFilter, pageSize: number, pageToken: string): Promise<Page<RunRecord>> {
    const cursor = decodePageToken(pageToken);
    const size = Math.max(0, Math.floor(pageSize));
    const rows = await this.query(this.sql.list, [
      filter.userId || null,
      filter.sessionId || null,
      filter.statuses?.length ? filter.statuses : null,
      cursor ? new Date(cursor.time).toISOString() : null,
      cursor?.id ?? null,
      size + 1,
    ]);
    const items = rows.slice(0, size).map(toRecord);
    const last = items.at(-1);
    return { items, nextPageToken: rows.length > size && last ? encodePageToken({ time: last.createTime, id: last.id }) : "" };
  }

  async append(runId: string, owner: string, lastSeq: number, events: readonly SequencedEvent[], update: RunUpdate = {}): Promise<void> {
    if (!UUID.test(runId)) throw notOwned(runId);
    const json = (value: unknown) => (value === undefined ? null : JSON.stringify(value));
    const rows = await this.query(this.sql.append, [
      runId,
      owner,
      Math.max(lastSeq, events.at(-1)?.seq ?? 0),
      update.status ?? null,
      json(update.result),
      json(update.error),
      json(update.pending),
      update.release === true,
      ...eventColumns(events),
      update.pending ? nextExpiry(update.pending) : null,
    ]).catch(async (err: unknown) => this.busyOr(err, (await this.get(runId))?.sessionId ?? ""));
    if (rows[0]?.owned !== 1) throw notOwned(runId);
  }

  async events(runId: string, afterSeq: number, limit: number): Promise<SequencedEvent[]> {
    if (!UUID.test(runId)) return [];
    const rows = await this.query(this.sql.events, [runId, afterSeq, Math.max(0, Math.floor(limit))]);
    return rows.map((r) => ({ seq: Number(r.seq), time: (r.time as Date).getTime(), event: r.event as SequencedEvent["event"] }));
  }

  async active(sessionId: string): Promise<RunRecord[]> {
    return (await this.query(this.sql.active, [sessionId])).map(toRecord);
  }

  async acquire(runId: string, owner: string, leaseMs: number): Promise<boolean> {
    if (!UUID.test(runId)) return false;
    return (await this.query(this.sql.acquire, [runId, owner, leaseMs])).length === 1;
  }

  async renew(owner: string, runIds: readonly string[], leaseMs: number): Promise<Renewal> {
    const ids = runIds.filter((id) => UUID.test(id));
    const rows = ids.length === 0 ? [] : await this.query(this.sql.renew, [owner, ids, leaseMs]);
    const renewed = new Set(rows.map((r) => r.id as string));
    const cancels = rows.filter((r) => r.cancel_requested !== null).map((r) => ({ runId: r.id as string, mode: r.cancel_requested as CancelMode }));
    return { lost: runIds.filter((id) => !renewed.has(id)), cancels };
  }

  async orphans(limit: number): Promise<RunRecord[]> {
    return (await this.query(this.sql.orphans, [Math.max(0, Math.floor(limit))])).map(toRecord);
  }

  async decide(runId: string, toolCallId: string, decision: Decision, now = Date.now()): Promise<"decided" | "already" | "absent"> {
    if (!UUID.test(runId)) return "absent";
    return this.changePending(runId, (status, pending) => {
      // An approval that expired was refused at its expiry, whether or not a sweep has written it yet.
      const expiry = status === "waiting" ? expirePending(pending, now) : { pending, expired: 0, ready: false };
      const found = decidePending(expiry.pending, toolCallId, decision);
      // A decision after the run went on (or ended) finds its call decided: that is a repeat, not an error.
      const result = status !== "waiting" && found.result === "decided" ? "absent" : found.result;
      if (result === "decided") return { result, pending: found.pending, ready: found.ready };
      return { result, ...(expiry.expired ? { pending: expiry.pending, ready: expiry.ready } : {}) };
    }).then((r) => r ?? "absent");
  }

  async expireApprovals(now: number, limit: number): Promise<string[]> {
    const changed: string[] = [];
    for (const row of await this.query(this.sql.expiring, [now, Math.max(0, Math.floor(limit))])) {
      const id = row.id as string;
      // Another replica's sweep (or a decision) may have got there first: the locked row says.
      const expired = await this.changePending(id, (status, pending) => {
        const expiry = status === "waiting" ? expirePending(pending, now) : undefined;
        return expiry?.expired ? { result: true, pending: expiry.pending, ready: expiry.ready } : { result: false };
      });
      if (expired) changed.push(id);
    }
    return changed;
  }

  /**
   * Rare and small: the run's row locked, its pending list changed in code by `change`, and
   * written back (when `change` gives a list) in one transaction. Undefined when there is no such run.
   */
  private async changePending<T>(
    runId: string,
    change: (status: RunStatus, pending: PendingCall[]) => { result: T; pending?: PendingCall[]; ready?: boolean },
  ): Promise<T | undefined> {
    const client = await this.pool.connect().catch((err: unknown) => {
      throw toRunStoreError(err);
    });
    try {
      await client.query("begin");
      const row = (await client.query<Row>(this.sql.lockPending, [runId])).rows[0];
      const changed = row && change(row.status as RunStatus, row.pending as PendingCall[]);
      if (!changed?.pending) {
        await client.query("rollback");
        return changed?.result;
      }
      await client.query(this.sql.setPending, [runId, JSON.stringify(changed.pending), changed.ready === true, nextExpiry(changed.pending)]);
      await client.query("commit");
      return changed.result;
    } catch (err) {
      await client.query("rollback").catch(() => undefined);
      throw toRunStoreError(err);
    } finally {
      client.release();
    }
  }

  async requestCancel(runId: string, mode: CancelMode): Promise<boolean> {
    if (!UUID.test(runId)) return false;
    return (await this.query(this.sql.requestCancel, [runId, mode])).length === 1;
  }

  async prune(before: number): Promise<number> {
    try {
      return (await this.pool.query(this.sql.prune, [before])).rowCount ?? 0;
    } catch (err) {
      throw toRunStoreError(err);
    }
  }

  /** Nothing to stop: the pool is the app's to end. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  private async query(text: string, values: unknown[]): Promise<Row[]> {
    try {
      return (await this.pool.query<Row>(text, values)).rows;
    } catch (err) {
      throw toRunStoreError(err);
    }
  }
}

/** The journaled events as the statements' three array parameters: seqs, epoch ms, JSON texts. */
function eventColumns(events: readonly SequencedEvent[]): [number[], number[], string[]] {
  const kept = events.filter(journaled);
  return [kept.map((e) => e.seq), kept.map((e) => e.time), kept.map((e) => JSON.stringify(e.event))];
}

/** A row as the record: optional fields only when set, as the memory store keeps them. */
function toRecord(row: Row): RunRecord {
  const run: RunRecord = {
    id: row.id as string,
    userId: row.user_id as string,
    agentId: row.agent_id as string,
    sessionId: row.session_id as string,
    idempotencyKey: row.idempotency_key as string,
    status: row.status as RunStatus,
    input: row.input as RunRecord["input"],
    settings: row.settings as RunRecord["settings"],
    createTime: (row.create_time as Date).getTime(),
    updateTime: (row.update_time as Date).getTime(),
    // bigint arrives as a string; seqs stay far below 2^53.
    lastSeq: Number(row.last_seq),
    pending: row.pending as RunRecord["pending"],
  };
  if (row.result !== null) run.result = row.result as RunRecord["result"];
  if (row.error !== null) run.error = row.error as RunRecord["error"];
  if (row.owner !== null) run.owner = row.owner as string;
  if (row.lease_until !== null) run.leaseUntil = (row.lease_until as Date).getTime();
  if (row.cancel_requested !== null) run.cancelRequested = row.cancel_requested as CancelMode;
  return run;
}
