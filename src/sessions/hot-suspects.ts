import pg from "pg";
import { toStoreError } from "./postgres-sql.ts";

/** A session whose Redis copy may be stale, with the version PostgreSQL holds now (undefined: deleted). */
export interface Suspect {
  id: string;
  version: number | undefined;
  sinceMs: number;
}

/**
 * The tiered store's list, in PostgreSQL, of sessions written while their Redis
 * copy could not be marked first (Redis refusing writes, or unreachable from that
 * process). A process's memory would die with it and is seen by no other process;
 * this list is seen by all of them, and none serves a listed session's copy until
 * one of them has replaced it with a stub.
 */
export class HotSuspects {
  private readonly addSql: string;
  private readonly listSql: string;
  private readonly clearSql: string;

  constructor(
    private readonly pool: pg.Pool,
    schema: string,
    /** The copies' Redis key prefix: only suspects of these copies are listed and cleared. */
    private readonly keyPrefix: string,
  ) {
    const s = pg.escapeIdentifier(schema);
    const now = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
    this.addSql = `insert into ${s}.hot_suspects (key_prefix, session_id, since_ms) values ($1, $2, ${now})
      on conflict (key_prefix, session_id) do update set since_ms = ${now}`;
    this.listSql = `select h.session_id, h.since_ms, x.version from ${s}.hot_suspects h
      left join ${s}.sessions x on x.id = h.session_id where h.key_prefix = $1 order by h.since_ms limit $2`;
    // Only the rows as they were read: one suspected again since then stays listed.
    this.clearSql = `delete from ${s}.hot_suspects where key_prefix = $1 and session_id = any($2::uuid[]) and since_ms <= $3`;
  }

  /** Lists the session before its write is committed, so no commit is ever unlisted. */
  async add(sessionId: string): Promise<void> {
    await this.run(this.addSql, [this.keyPrefix, sessionId]);
  }

  /** The oldest `limit` listed sessions. */
  async list(limit: number): Promise<Suspect[]> {
    const rows = await this.run(this.listSql, [this.keyPrefix, limit]);
    return rows.map((r) => ({
      id: String(r.session_id),
      sinceMs: Number(r.since_ms),
      version: r.version === null ? undefined : Number(r.version),
    }));
  }

  /** Unlists these sessions, as `list` returned them, once their copies are retired. */
  async clear(suspects: readonly Suspect[]): Promise<void> {
    if (!suspects.length) return;
    await this.run(this.clearSql, [this.keyPrefix, suspects.map((s) => s.id), Math.max(...suspects.map((s) => s.sinceMs))]);
  }

  private async run(sql: string, params: unknown[]): Promise<Record<string, unknown>[]> {
    try {
      return (await this.pool.query(sql, params)).rows;
    } catch (err) {
      throw toStoreError(err);
    }
  }
}
