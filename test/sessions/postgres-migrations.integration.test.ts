// Migration 4 (tool calls and tool results in messages) on a database that the
// release before left at version 3, holding a conversation: it applies, and
// what was stored reads back as it did.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import pino from "pino";
import { runMigrations } from "../../src/db/migrate.ts";
import { migrationComponent, sessionMigrations } from "../../src/sessions/postgres-migrations.ts";
import { PostgresSessionStore } from "../../src/sessions/postgres-store.ts";
import { databaseUrl } from "../support/services.ts";
import { toolTurn } from "./store-tool-messages-contract.ts";

const schema = `sess_mig_${Math.random().toString(36).slice(2, 10)}`;
const component = migrationComponent(schema);
let pool: pg.Pool;
let store: PostgresSessionStore | undefined;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: databaseUrl() });
  await pool.query(`create schema ${schema}`);
});

afterAll(async () => {
  await store?.close();
  await pool.query(`drop schema if exists ${schema} cascade`);
  await pool.query("delete from qingyu_schema_migrations where component = $1", [component]);
  await pool.end();
});

/** Appends messages as the release before did: role and content only. */
async function oldAppend(sessionId: string, messages: [string, string][]): Promise<void> {
  for (const [role, content] of messages) {
    await pool.query(`insert into ${schema}.messages (session_id, role, content) values ($1, $2, $3)`, [sessionId, role, content]);
  }
  await pool.query(`update ${schema}.sessions set version = version + 1, message_count = message_count + $2 where id = $1`, [sessionId, messages.length]);
}

describe("session migrations: tool calls and tool results", () => {
  it("apply on a database at the previous version, and what it held, and what the previous release still writes, reads back unchanged", async () => {
    expect(
      await runMigrations(
        pool,
        component,
        sessionMigrations(schema).filter((m) => m.version <= 3),
      ),
    ).toBe(3);
    const created = await pool.query(
      `insert into ${schema}.sessions (user_id, agent_id, ttl_seconds, created_at, updated_at, expires_at)
       values ('alice', 'helper', 600, now(), now(), now() + interval '10 minutes') returning id`,
    );
    const id = created.rows[0].id as string;
    await oldAppend(id, [
      ["user", "q0"],
      ["assistant", "a0 \\u0000 / ünïcode"],
    ]);

    store = await PostgresSessionStore.open(pool, { schema, sweepIntervalMs: 60_000, log: pino({ level: "silent" }) });
    const applied = await pool.query("select version from qingyu_schema_migrations where component = $1 order by version", [component]);
    expect(applied.rows.map((r) => r.version)).toEqual([1, 2, 3, 4]);
    const old = [
      { role: "user", content: "q0" },
      { role: "assistant", content: "a0 \\u0000 / ünïcode" },
    ];
    expect((await store.get(id, { messages: 100 }))!.messages).toStrictEqual(old);

    await store.appendMessages(id, toolTurn(1));
    // A replica of the release before, mid rolling deploy, still writes rows without the new columns.
    await oldAppend(id, [["user", "q2"]]);
    const got = await store.get(id, { messages: 100 });
    expect(got!.messages).toStrictEqual([...old, ...toolTurn(1), { role: "user", content: "q2" }]);
    expect(got).toMatchObject({ version: 3, messageCount: 8 });
  });
});
