import { type ChatMessage, invalidArgument, notFound } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { Logger } from "pino";
import { failureDetail } from "../clients/shared.ts";
import { runMigrations } from "../db/migrate.ts";
import { decodePageToken, encodePageToken } from "./page-token.ts";
import { migrationComponent, sessionMigrations } from "./postgres-migrations.ts";
import { tooManySessions } from "./bounds.ts";
import { messageColumns, sessionSql, toStoreError, type SessionSql } from "./postgres-sql.ts";
import { staleVersion } from "./refusals.ts";
import {
  type CheckpointRecord,
  type CreateSessionInput,
  DEFAULT_PAGE_BYTES,
  type GetOptions,
  type JsonObject,
  type Page,
  type SaveCheckpointInput,
  type SessionRecord,
  type SessionStore,
} from "./types.ts";

/** Settings of a PostgreSQL session store. */
export interface PostgresStoreSettings {
  /** The schema holding the session tables; it must exist (migrations create the tables, not the schema). */
  schema: string;
  /** How often expired sessions are deleted. */
  sweepIntervalMs: number;
  log: Logger;
  /** Most sessions one sweep statement deletes (with their messages and checkpoints); default 100. */
  sweepBatchSize?: number;
  /** A listing page's byte budget (see LISTED_OVERHEAD_BYTES); default DEFAULT_PAGE_BYTES. */
  maxPageBytes?: number;
}

/** What a write left the session at: enough for a cache to follow without reading again. */
export interface WriteHead {
  version: number;
  updateTime: Date;
  expireTime: Date;
  messageCount: number;
}

// A sweep tick deletes at most this many batches, so one tick never runs unbounded.
const MAX_BATCHES_PER_SWEEP = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Matches no checkpoint (ours are random v4 UUIDs): a malformed checkpoint id is
// simply not found, while the session's existence is still checked.
const NO_CHECKPOINT = "00000000-0000-0000-0000-000000000000";

type Row = Record<string, unknown>;

/**
 * Sessions in PostgreSQL, shared by every process. get, appendMessages and
 * saveCheckpoint are one statement each (data-modifying CTEs), whatever the
 * history length; expiry is filtered on every read by the database clock and
 * expired rows are swept in bounded batches.
 */
export class PostgresSessionStore implements SessionStore {
  private readonly sql: SessionSql;
  private readonly sweeper: NodeJS.Timeout;
  private readonly batchSize: number;
  private readonly maxPageBytes: number;
  private sweeping: Promise<void> | undefined;
  private closed = false;

  /** Assumes the schema is migrated: use open() unless it is known to be. Starts the sweeper. */
  constructor(
    private readonly pool: pg.Pool,
    private readonly settings: PostgresStoreSettings,
  ) {
    this.sql = sessionSql(settings.schema);
    this.batchSize = settings.sweepBatchSize ?? 100;
    this.maxPageBytes = settings.maxPageBytes ?? DEFAULT_PAGE_BYTES;
    this.sweeper = setInterval(() => {
      this.sweeping ??= this.sweep().finally(() => (this.sweeping = undefined));
    }, settings.sweepIntervalMs);
    this.sweeper.unref();
  }

  /** Checks the schema exists, applies pending migrations (safe when processes start together), then opens the store. */
  static async open(pool: pg.Pool, settings: PostgresStoreSettings): Promise<PostgresSessionStore> {
    const { schema, log } = settings;
    let found: pg.QueryResult;
    try {
      found = await pool.query("select 1 from pg_namespace where nspname = $1", [schema]);
    } catch (err) {
      throw toStoreError(err);
    }
    if (found.rowCount === 0) {
      throw new Error(
        `PostgreSQL schema "${schema}" does not exist: create it (create schema ${pg.escapeIdentifier(schema)}) ` +
          "or name an existing one; the session migrations create tables in it, not the schema itself",
      );
    }
    const applied = await runMigrations(pool, migrationComponent(schema), sessionMigrations(schema));
    if (applied > 0) log.info({ schema, applied }, "session tables migrated");
    return new PostgresSessionStore(pool, settings);
  }

  async create(input: CreateSessionInput): Promise<SessionRecord> {
    const metadata = JSON.stringify(input.metadata);
    if (input.maxLive === undefined) {
      return toSession((await this.query(this.sql.create, [input.userId, input.agentId, metadata, input.ttlSeconds]))[0]!, []);
    }
    let rows: Row[];
    try {
      // Two statements in one query: the lock's result, then the insert's.
      const results = (await this.pool.query(
        this.sql.cappedCreate(input.userId, input.agentId, metadata, input.ttlSeconds, input.maxLive),
      )) as unknown as pg.QueryResult<Row>[];
      rows = results[1]!.rows;
    } catch (err) {
      throw toStoreError(err);
    }
    if (!rows[0]) throw tooManySessions(input.userId, input.maxLive);
    return toSession(rows[0], []);
  }

  async get(sessionId: string, options: GetOptions): Promise<SessionRecord | undefined> {
    if (!UUID.test(sessionId)) return undefined;
    const rows = await this.query(this.sql.get, [sessionId, Math.max(0, Math.floor(options.messages))]);
    const row = rows[0];
    return row && toSession(row, row.messages as ChatMessage[]);
  }

  /** The live session's current version, or undefined when it does not exist or has expired. */
  async version(sessionId: string): Promise<number | undefined> {
    if (!UUID.test(sessionId)) return undefined;
    const row = (await this.query(this.sql.version, [sessionId]))[0];
    return row && Number(row.version);
  }

  async list(userId: string, pageSize: number, pageToken: string): Promise<Page<SessionRecord>> {
    const cursor = decodePageToken(pageToken);
    if (cursor && (!UUID.test(cursor.id) || !Number.isFinite(cursor.time))) {
      throw invalidArgument("page_token", "is not a token this server issued");
    }
    const after = cursor ? new Date(cursor.time).toISOString() : null;
    const rows = await this.query(this.sql.list, [userId, after, cursor?.id ?? null, pageSize + 1, this.maxPageBytes]);
    // The rows that fit come first (the byte count only grows down the page).
    const items = rows
      .filter((r) => r.fits === true)
      .slice(0, pageSize)
      .map((r) => toSession(r, []));
    const last = items.at(-1);
    return {
      items,
      nextPageToken: rows.length > items.length && last ? encodePageToken({ time: last.createTime.getTime(), id: last.id }) : "",
    };
  }

  async delete(sessionId: string): Promise<boolean> {
    if (!UUID.test(sessionId)) return false;
    const rows = await this.query(this.sql.delete, [sessionId]);
    return rows[0]?.live === true;
  }

  async appendMessages(sessionId: string, messages: ChatMessage[]): Promise<number> {
    return (await this.append(sessionId, messages)).version;
  }

  /** appendMessages, reporting the whole head the write produced. */
  async append(sessionId: string, messages: ChatMessage[]): Promise<WriteHead> {
    if (!UUID.test(sessionId)) throw notFound("session", sessionId);
    const rows = await this.query(this.sql.append, [sessionId, ...messageColumns(messages)]);
    if (!rows[0]) throw notFound("session", sessionId);
    return toHead(rows[0]);
  }

  async saveCheckpoint(sessionId: string, input: SaveCheckpointInput): Promise<CheckpointRecord> {
    return (await this.saveCheckpointWithHead(sessionId, input)).checkpoint;
  }

  /** saveCheckpoint, also reporting the session head the save produced. */
  async saveCheckpointWithHead(
    sessionId: string,
    { data, expectedVersion, keep }: SaveCheckpointInput,
  ): Promise<{ checkpoint: CheckpointRecord; head: WriteHead }> {
    if (!UUID.test(sessionId)) throw notFound("session", sessionId);
    const id = randomUUID();
    // The new checkpoint always stays, so at least one is kept.
    const kept = Math.max(1, Math.floor(keep));
    const rows = await this.query(this.sql.saveCheckpoint, [sessionId, id, expectedVersion, JSON.stringify(data), kept]);
    const row = rows[0]!;
    if (row.current_version === null) throw notFound("session", sessionId);
    if (row.version === null) {
      throw staleVersion(sessionId, Number(row.current_version), expectedVersion);
    }
    const head = toHead(row);
    // The data is not sent back: the caller's copy is what was stored.
    const checkpoint: CheckpointRecord = {
      id,
      sessionId,
      data: structuredClone(data),
      createTime: head.updateTime,
      parentId: (row.parent_id as string | null) ?? "",
      version: head.version,
    };
    return { checkpoint, head };
  }

  async getCheckpoint(sessionId: string, checkpointId: string): Promise<CheckpointRecord | undefined> {
    if (!UUID.test(sessionId)) throw notFound("session", sessionId);
    const wanted = checkpointId === "" ? null : UUID.test(checkpointId) ? checkpointId : NO_CHECKPOINT;
    const rows = await this.query(this.sql.getCheckpoint, [sessionId, wanted]);
    if (!rows[0]) throw notFound("session", sessionId);
    return rows[0].id === null ? undefined : toCheckpoint(sessionId, rows[0]);
  }

  async listCheckpoints(sessionId: string, pageSize: number, pageToken: string): Promise<Page<CheckpointRecord>> {
    // Versions are unique within a session, so the version alone places the cursor.
    const cursor = decodePageToken(pageToken);
    if (cursor && !Number.isSafeInteger(cursor.time)) throw invalidArgument("page_token", "is not a token this server issued");
    if (!UUID.test(sessionId)) throw notFound("session", sessionId);
    const rows = await this.query(this.sql.listCheckpoints, [sessionId, cursor?.time ?? null, pageSize + 1, this.maxPageBytes]);
    if (rows.length === 0) throw notFound("session", sessionId);
    const found = rows.filter((r) => r.id !== null);
    const items = found
      .filter((r) => r.fits === true)
      .slice(0, pageSize)
      .map((r) => toCheckpoint(sessionId, r));
    const last = items.at(-1);
    return {
      items,
      nextPageToken: found.length > items.length && last ? encodePageToken({ time: last.version, id: last.id }) : "",
    };
  }

  async ping(): Promise<void> {
    await this.query("select 1", []);
  }

  /** Stops the sweeper and waits for a sweep in flight; the pool is the app's to end. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    await this.sweeping;
  }

  /** Deletes expired sessions batch by batch; a failure is logged, never thrown (the next tick retries). */
  async sweep(): Promise<void> {
    try {
      let total = 0;
      for (let i = 0; i < MAX_BATCHES_PER_SWEEP && !this.closed; i++) {
        const result = await this.pool.query(this.sql.sweep, [this.batchSize]);
        total += result.rowCount ?? 0;
        if ((result.rowCount ?? 0) < this.batchSize) break;
      }
      if (total > 0) this.settings.log.debug({ schema: this.settings.schema, deleted: total }, "expired sessions swept");
    } catch (err) {
      this.settings.log.warn({ err: failureDetail(err), schema: this.settings.schema }, "session sweep failed");
    }
  }

  private async query(text: string, values: unknown[]): Promise<Row[]> {
    try {
      return (await this.pool.query<Row>(text, values)).rows;
    } catch (err) {
      throw toStoreError(err);
    }
  }
}

function toSession(row: Row, messages: ChatMessage[]): SessionRecord {
  return {
    id: row.id as string,
    userId: row.user_id as string,
    agentId: row.agent_id as string,
    createTime: row.created_at as Date,
    updateTime: row.updated_at as Date,
    expireTime: row.expires_at as Date,
    metadata: row.metadata as Record<string, string>,
    // bigint arrives as a string; versions stay far below 2^53.
    version: Number(row.version),
    messages,
    messageCount: row.message_count as number,
  };
}

function toHead(row: Row): WriteHead {
  return {
    version: Number(row.version),
    updateTime: row.updated_at as Date,
    expireTime: row.expires_at as Date,
    messageCount: row.message_count as number,
  };
}

function toCheckpoint(sessionId: string, row: Row): CheckpointRecord {
  return {
    id: row.id as string,
    sessionId,
    data: row.data as JsonObject,
    createTime: row.created_at as Date,
    parentId: (row.parent_id as string | null) ?? "",
    version: Number(row.version),
  };
}
