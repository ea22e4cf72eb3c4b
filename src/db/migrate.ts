import type pg from "pg";

/** One schema change of a component; versions are applied in ascending order, each once. */
export interface Migration {
  readonly version: number;
  /** Short description; recorded and named in errors. */
  readonly name: string;
  /** One or more SQL statements, run as a simple query. */
  readonly sql: string;
}

/** A migration that failed; nothing of the run was applied. */
export class MigrationError extends Error {
  constructor(
    readonly component: string,
    readonly version: number,
    readonly migration: string,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`migration ${version} "${migration}" of ${component} failed: ${reason}`, { cause });
    this.name = "MigrationError";
  }
}

// Every component takes the same lock: the bookkeeping table itself is created
// under it, and `create table if not exists` is not safe against a concurrent twin.
const LOCK_KEY = 0x71696e67; // "qing"

const CREATE_TABLE = `
  create table if not exists qingyu_schema_migrations (
    component text not null,
    version integer not null,
    name text not null,
    applied_at timestamptz not null default now(),
    primary key (component, version)
  )`;

/**
 * Applies a component's pending migrations in one transaction under an advisory
 * lock, so processes starting together apply each exactly once. Returns how
 * many were applied (0 when the schema is current).
 */
export async function runMigrations(pool: pg.Pool, component: string, migrations: readonly Migration[]): Promise<number> {
  const ordered = checked(component, migrations);
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw new Error(`cannot migrate ${component}: cannot connect to PostgreSQL: ${messageOf(err)}`, { cause: err });
  }
  let broken: Error | undefined;
  try {
    await client.query("begin");
    try {
      const applied = await pending(client, component, ordered);
      await client.query("commit");
      return applied;
    } catch (err) {
      await client.query("rollback").catch((rollbackErr: unknown) => {
        // A connection that cannot roll back must not go back to the pool.
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      });
      throw err;
    }
  } finally {
    client.release(broken);
  }
}

/** Inside the transaction: locks, reads what is applied, applies the rest. */
async function pending(client: pg.PoolClient, component: string, ordered: readonly Migration[]): Promise<number> {
  try {
    await client.query("select pg_advisory_xact_lock($1)", [LOCK_KEY]);
    await client.query(CREATE_TABLE);
  } catch (err) {
    throw new Error(`cannot migrate ${component}: ${messageOf(err)}`, { cause: err });
  }
  const done = await client.query<{ version: number }>("select version from qingyu_schema_migrations where component = $1", [component]);
  const applied = new Set(done.rows.map((r) => r.version));
  let count = 0;
  for (const m of ordered) {
    if (applied.has(m.version)) continue;
    try {
      await client.query(m.sql);
      await client.query("insert into qingyu_schema_migrations (component, version, name) values ($1, $2, $3)", [component, m.version, m.name]);
    } catch (err) {
      throw new MigrationError(component, m.version, m.name, err);
    }
    count++;
  }
  return count;
}

/** The migrations sorted by version; refuses lists a typo could make ambiguous. */
function checked(component: string, migrations: readonly Migration[]): Migration[] {
  if (component === "") throw new Error("runMigrations: component must not be empty");
  const seen = new Set<number>();
  for (const m of migrations) {
    if (!Number.isInteger(m.version) || m.version < 1 || m.version > 2 ** 31 - 1) {
      throw new Error(`runMigrations: ${component} has migration "${m.name}" with invalid version ${m.version}`);
    }
    if (seen.has(m.version)) throw new Error(`runMigrations: ${component} has two migrations with version ${m.version}`);
    seen.add(m.version);
  }
  return [...migrations].sort((a, b) => a.version - b.version);
}

function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return messageOf(err.errors[0]);
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
