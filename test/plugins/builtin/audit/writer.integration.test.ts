import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import pg from "pg";
import pino from "pino";
import { runMigrations } from "../../../../src/db/migrate.ts";
import { auditComponent, auditMigrations, toolCallsTable } from "../../../../src/plugins/builtin/audit/migrations.ts";
import { AuditWriter, RUN_COLUMNS, type AuditRow, type WriterSettings } from "../../../../src/plugins/builtin/audit/writer.ts";
import { settlesBefore } from "../../../support/settles-before.ts";
import { databaseUrl } from "../../../support/services.ts";

const URL = databaseUrl();
const table = `auditw_${Math.random().toString(36).slice(2, 10)}`;
const away = `${table}_away`;
let pool: pg.Pool;
let logs: { level: number; msg: string; row?: Record<string, unknown>; queued?: number }[] = [];

const ERROR = 50;
const WARN = 40;

function writer(settings: Partial<WriterSettings> = {}): AuditWriter<AuditRow> {
  const logger = pino({ level: "debug" }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  return new AuditWriter(pool, table, logger, { batchSize: 100, flushIntervalMs: 20, maxQueue: 100, ...settings }, RUN_COLUMNS);
}

let n = 0;
function auditRow(callId = `c-${++n}-${Math.random().toString(36).slice(2, 6)}`): AuditRow {
  return {
    time: new Date("2025-01-02T03:04:05.678Z"),
    call_id: callId,
    principal: "alice",
    user_id: "alice",
    agent_id: "echo",
    session_id: null,
    status: "OK",
    code: 0,
    input_tokens: 3,
    output_tokens: 5,
    duration_ms: 12,
    input_sha256: "ab".repeat(32),
    input: "the task",
    error: null,
  };
}

async function written(rows: AuditRow[]): Promise<string[]> {
  const r = await pool.query<{ call_id: string }>(`select call_id from ${table} where call_id = any($1) order by id`, [rows.map((x) => x.call_id)]);
  return r.rows.map((x) => x.call_id);
}

/** Makes inserts fail, as a missing table (or database) would, until restored. */
async function breakTable(): Promise<void> {
  await pool.query(`alter table ${table} rename to ${away}`);
}

async function restoreTable(): Promise<void> {
  await pool.query(`alter table ${away} rename to ${table}`);
}

const errorsAbout = (message: RegExp) => logs.filter((l) => l.level === ERROR && message.test(l.msg));

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: URL });
  await runMigrations(pool, auditComponent(table), auditMigrations(table));
});

beforeEach(() => {
  logs = [];
});

afterAll(async () => {
  await pool.query(`drop table if exists ${table}`);
  await pool.query(`drop table if exists ${away}`);
  await pool.query(`drop table if exists ${toolCallsTable(table)}`);
  await pool.query("delete from qingyu_schema_migrations where component = $1", [auditComponent(table)]);
  await pool.end();
});

describe("AuditWriter", () => {
  it("writes rows exactly as given, in one INSERT per batch", async () => {
    const w = writer({ batchSize: 2, flushIntervalMs: 60_000 });
    const rows = [auditRow(), auditRow(), auditRow()];
    for (const r of rows) w.enqueue(r);
    await vi.waitFor(async () => expect(await written(rows)).toEqual(rows.slice(0, 2).map((r) => r.call_id)), { timeout: 30_000, interval: 20 });
    await w.dispose();
    expect(await written(rows)).toEqual(rows.map((r) => r.call_id));
    const stored = await pool.query(`select * from ${table} where call_id = $1`, [rows[0]!.call_id]);
    const { id, ...fields } = stored.rows[0];
    expect(fields).toEqual(rows[0]);
  });

  it("keeps the rows when an insert fails and writes them on a later flush", async () => {
    const w = writer();
    await breakTable();
    const rows = [auditRow(), auditRow()];
    try {
      for (const r of rows) w.enqueue(r);
      await vi.waitFor(() => expect(logs.some((l) => l.level === WARN && /insert failed/.test(l.msg))).toBe(true), { timeout: 30_000, interval: 10 });
    } finally {
      await restoreTable();
    }
    await vi.waitFor(async () => expect(await written(rows)).toEqual(rows.map((r) => r.call_id)), { timeout: 30_000, interval: 20 });
    await w.dispose();
    expect(errorsAbout(/./)).toEqual([]);
  });

  it("drops the oldest rows beyond maxQueue while inserts fail, logging each one in full", async () => {
    // Slow retries, so no retry is in flight while rows 3 and 4 arrive.
    const w = writer({ maxQueue: 2, flushIntervalMs: 300 });
    await breakTable();
    const rows = [auditRow(), auditRow(), auditRow(), auditRow()];
    try {
      w.enqueue(rows[0]!);
      w.enqueue(rows[1]!);
      await vi.waitFor(() => expect(logs.some((l) => l.level === WARN && /insert failed/.test(l.msg))).toBe(true), { timeout: 30_000, interval: 10 });
      w.enqueue(rows[2]!);
      w.enqueue(rows[3]!);
    } finally {
      await restoreTable();
    }
    const dropped = errorsAbout(/queue full/);
    expect(dropped.map((l) => l.row)).toEqual(rows.slice(0, 2).map((r) => ({ ...r, time: r.time.toISOString() })));
    await w.dispose();
    expect(await written(rows)).toEqual(rows.slice(2).map((r) => r.call_id));
  });

  it("on dispose logs in full each row it could not write, within its time bound", async () => {
    const w = writer({ disposeTimeoutMs: 1000 });
    await breakTable();
    const rows = [auditRow(), auditRow()];
    try {
      for (const r of rows) w.enqueue(r);
      // The table stays broken until dispose returns: it returns at its bound (1 s), before the 5 s default would end it.
      expect(await settlesBefore(w.dispose(), 5_000)).toBe(true);
    } finally {
      await restoreTable();
    }
    expect(errorsAbout(/not written/).map((l) => l.row?.call_id)).toEqual(rows.map((r) => r.call_id));
    expect(await written(rows)).toEqual([]);
  });

  it("still writes the row of a call that finishes after dispose", async () => {
    const w = writer({ flushIntervalMs: 60_000 });
    await w.dispose();
    const late = auditRow();
    w.enqueue(late);
    await vi.waitFor(async () => expect(await written([late])).toEqual([late.call_id]), { timeout: 30_000, interval: 20 });
    expect(errorsAbout(/./)).toEqual([]);
  });
});
