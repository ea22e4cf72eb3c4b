import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { MigrationError, runMigrations, type Migration } from "../../src/db/migrate.ts";
import { databaseUrl } from "../support/services.ts";

const URL = databaseUrl();
const prefix = `mig_${Math.random().toString(36).slice(2, 10)}`;
let pool: pg.Pool;
let tables: string[] = [];
let components: string[] = [];

/** A fresh component and table name for one test, cleaned up after it. */
function fresh(): { component: string; table: string } {
  const n = components.length;
  const table = `${prefix}_${n}`;
  const component = `test:${table}`;
  tables.push(table);
  components.push(component);
  return { component, table };
}

function steps(table: string): Migration[] {
  return [
    { version: 1, name: "create", sql: `create table ${table} (id int primary key, step text)` },
    { version: 2, name: "first row", sql: `insert into ${table} values (1, 'two')` },
    // Depends on version 2 having run first.
    { version: 3, name: "update", sql: `update ${table} set step = step || ',three' where id = 1` },
  ];
}

async function applied(component: string): Promise<{ version: number; name: string }[]> {
  const r = await pool.query("select version, name from qingyu_schema_migrations where component = $1 order by version", [component]);
  return r.rows;
}

beforeAll(() => {
  pool = new pg.Pool({ connectionString: URL });
});

afterEach(async () => {
  for (const t of tables) await pool.query(`drop table if exists ${t}`);
  await pool.query("delete from qingyu_schema_migrations where component = any($1)", [components]).catch(() => {});
  tables = [];
});

afterAll(async () => {
  await pool.end();
});

describe("runMigrations", () => {
  it("applies migrations in version order, given in any order, and records them", async () => {
    const { component, table } = fresh();
    const [a, b, c] = steps(table);
    expect(await runMigrations(pool, component, [c!, a!, b!])).toBe(3);
    const rows = await pool.query(`select step from ${table}`);
    expect(rows.rows).toEqual([{ step: "two,three" }]);
    expect(await applied(component)).toEqual([
      { version: 1, name: "create" },
      { version: 2, name: "first row" },
      { version: 3, name: "update" },
    ]);
  });

  it("applies nothing the second time, and only new versions later", async () => {
    const { component, table } = fresh();
    const all = steps(table);
    expect(await runMigrations(pool, component, all.slice(0, 2))).toBe(2);
    expect(await runMigrations(pool, component, all.slice(0, 2))).toBe(0);
    expect(await runMigrations(pool, component, all)).toBe(1);
    expect(await runMigrations(pool, component, all)).toBe(0);
    expect((await pool.query(`select step from ${table}`)).rows).toEqual([{ step: "two,three" }]);
  });

  it("applies each migration exactly once when two processes start together", async () => {
    const { component, table } = fresh();
    const other = new pg.Pool({ connectionString: URL });
    try {
      // Both pools connected already, and the first step slow, so the runs really overlap.
      await Promise.all([pool.query("select 1"), other.query("select 1")]);
      const [first, ...rest] = steps(table);
      const migrations = [{ ...first!, sql: `${first!.sql}; select pg_sleep(0.2)` }, ...rest];
      const counts = await Promise.all([
        runMigrations(pool, component, migrations),
        runMigrations(other, component, migrations),
        runMigrations(other, component, migrations),
      ]);
      expect(counts.sort()).toEqual([0, 0, 3]);
      expect((await pool.query(`select step from ${table}`)).rows).toEqual([{ step: "two,three" }]);
      expect(await applied(component)).toHaveLength(3);
    } finally {
      await other.end();
    }
  });

  it("rolls the whole run back when a migration fails, naming it", async () => {
    const { component, table } = fresh();
    const migrations = [...steps(table), { version: 4, name: "broken step", sql: `alter table ${table} add column oops no_such_type` }];
    const err = await runMigrations(pool, component, migrations).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MigrationError);
    const failure = err as MigrationError;
    expect(failure.component).toBe(component);
    expect(failure.version).toBe(4);
    expect(failure.migration).toBe("broken step");
    expect(failure.message).toContain(`migration 4 "broken step" of ${component}`);
    expect(failure.message).toContain("no_such_type");
    expect(failure.cause).toBeInstanceOf(Error);
    // Versions 1-3 ran in the same transaction: none of them stayed.
    const exists = await pool.query("select to_regclass($1) as t", [table]);
    expect(exists.rows[0].t).toBeNull();
    expect(await applied(component)).toEqual([]);
    // Fixed, the run succeeds from scratch.
    expect(await runMigrations(pool, component, steps(table))).toBe(3);
  });

  it("refuses duplicate versions before touching the database", async () => {
    const { component, table } = fresh();
    const [a] = steps(table);
    await expect(runMigrations(pool, component, [a!, { ...a!, name: "again" }])).rejects.toThrow(/two migrations with version 1/);
    expect(await applied(component)).toEqual([]);
  });

  it("fails with the component named when PostgreSQL is unreachable", async () => {
    const dead = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:1/test", connectionTimeoutMillis: 500 });
    try {
      await expect(runMigrations(dead, "test:dead", [])).rejects.toThrow(/cannot migrate test:dead: cannot connect to PostgreSQL/);
    } finally {
      await dead.end();
    }
  });
});
