import { Code, ConnectError, type Middleware, type Principal, type RunEvent } from "@qingyu/plugin-api";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import pg from "pg";
import audit from "../../../../src/plugins/builtin/audit/plugin.ts";
import { agentContext, collect, setUpPlugin, terminal } from "../../../support/plugin-context.ts";
import type { AuditRow } from "../../../../src/plugins/builtin/audit/writer.ts";
import { databaseUrl } from "../../../support/services.ts";
import { toolCallsTable } from "../../../../src/plugins/builtin/audit/migrations.ts";
import type { ToolCallRow } from "../../../../src/plugins/builtin/audit/writer.ts";
import { adder, callInfo, input, scriptedModel, toolExecutor } from "../tool-run.ts";

const URL = databaseUrl();
const table = `audit_${Math.random().toString(36).slice(2, 10)}`;
const qualified = `public.${table}_q`;
let pool: pg.Pool;

const alice: Principal = { id: "alice", admin: false, roles: [], method: "api-key" };

/** A row as the table holds it: the writer's own row type. */
type Row = AuditRow;

async function rows(callIds: string[], from = table): Promise<Row[]> {
  const r = await pool.query<Row>(`select * from ${from} where call_id = any($1) order by id`, [callIds]);
  return r.rows;
}

function row(all: Row[], callId: string): Row {
  const found = all.filter((r) => r.call_id === callId);
  expect(found).toHaveLength(1);
  return found[0]!;
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

async function* failing(err: unknown): AsyncIterable<RunEvent> {
  yield* [];
  throw err;
}

beforeAll(() => {
  pool = new pg.Pool({ connectionString: URL });
});

afterAll(async () => {
  for (const t of [table, qualified]) {
    await pool.query(`drop table if exists ${t}`);
    await pool.query(`drop table if exists ${toolCallsTable(t)}`);
  }
  await pool.query("delete from qingyu_schema_migrations where component = any($1)", [[`audit:${table}`, `audit:${qualified}`]]);
  await pool.end();
});

describe("audit middleware", () => {
  it("records one row per call: OK, failed and cancelled, with principal, tokens and input hash", async () => {
    const mw = await setUpPlugin(audit, { table }, { postgres: pool });

    const ok = agentContext({ principal: alice, userId: "alice", sessionId: "s-1", task: "what is 2+2?" });
    const t = terminal();
    const events = await collect(mw.process(ok, t.next));
    expect(events).toEqual(await collect(terminal().next()));

    const invalid = agentContext({ task: "bad" });
    const thrown = new ConnectError("x", Code.InvalidArgument);
    await expect(collect(mw.process(invalid, () => failing(thrown)))).rejects.toBe(thrown);

    const crashed = agentContext({ task: "crash" });
    await expect(collect(mw.process(crashed, () => failing(new Error("boom"))))).rejects.toThrow("boom");

    const cancelled = agentContext({ task: "stop early" });
    const seen: RunEvent[] = [];
    for await (const event of mw.process(cancelled, terminal().next)) {
      seen.push(event);
      break;
    }
    expect(seen).toEqual([{ type: "started", model: "echo-1" }]);

    await mw.dispose!();
    const all = await rows([ok.callId, invalid.callId, crashed.callId, cancelled.callId]);
    expect(all).toHaveLength(4);

    const okRow = row(all, ok.callId);
    expect(okRow).toMatchObject({
      principal: "alice",
      user_id: "alice",
      agent_id: "echo",
      session_id: "s-1",
      status: "OK",
      code: 0,
      input_tokens: 3,
      output_tokens: 5,
      input_sha256: sha256("what is 2+2?"),
      input: null,
      error: null,
    });
    expect(Math.abs(okRow.time.getTime() - ok.startTime)).toBeLessThan(5);
    expect(okRow.duration_ms).toBeGreaterThanOrEqual(0);

    expect(row(all, invalid.callId)).toMatchObject({
      principal: null,
      user_id: null,
      session_id: null,
      status: "INVALID_ARGUMENT",
      code: Code.InvalidArgument,
      input_tokens: null,
      output_tokens: null,
      input_sha256: sha256("bad"),
      error: "x",
    });
    expect(row(all, crashed.callId)).toMatchObject({ status: "INTERNAL", code: Code.Internal, error: "internal error: boom" });
    expect(row(all, cancelled.callId)).toMatchObject({ status: "CANCELLED", code: Code.Canceled, input_tokens: null });
  });

  it("records the abort reason when the consumer stops because the deadline passed", async () => {
    const mw = await setUpPlugin(audit, { table }, { postgres: pool });
    const controller = new AbortController();
    const ctx = agentContext({ signal: controller.signal });
    for await (const _ of mw.process(ctx, terminal().next)) {
      controller.abort(new ConnectError("deadline exceeded", Code.DeadlineExceeded));
      break;
    }
    await mw.dispose!();
    expect(row(await rows([ctx.callId]), ctx.callId)).toMatchObject({ status: "DEADLINE_EXCEEDED", code: Code.DeadlineExceeded });
  });

  it("stores the raw task only with recordInput, and the task as the client sent it", async () => {
    const plain = await setUpPlugin(audit, { table }, { postgres: pool });
    const recording = await setUpPlugin(audit, { table, recordInput: true }, { postgres: pool });
    const a = agentContext({ task: "secret question" });
    const b = agentContext({ task: "open question" });
    await collect(plain.process(a, terminal().next));
    await collect(
      recording.process(b, () => {
        b.task = "rewritten by an inner middleware";
        return terminal().next();
      }),
    );
    await Promise.all([plain.dispose!(), recording.dispose!()]);
    const all = await rows([a.callId, b.callId]);
    expect(row(all, a.callId)).toMatchObject({ input: null, input_sha256: sha256("secret question") });
    expect(row(all, b.callId)).toMatchObject({ input: "open question", input_sha256: sha256("open question") });
  });

  it("passes each event on as it arrives, before the run finishes", async () => {
    const mw = await setUpPlugin(audit, { table }, { postgres: pool });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const ctx = agentContext();
    const it = mw
      .process(ctx, async function* () {
        yield { type: "started", model: "echo-1" } satisfies RunEvent;
        await held;
        yield* terminal().next();
      })
      [Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ done: false, value: { type: "started", model: "echo-1" } });
    release();
    while (!(await it.next()).done);
    await mw.dispose!();
    expect(await rows([ctx.callId])).toHaveLength(1);
  });

  it("writes rows within flushIntervalMs without waiting for dispose", async () => {
    const mw = await setUpPlugin(audit, { table, flushIntervalMs: 50 }, { postgres: pool });
    const ctx = agentContext();
    await collect(mw.process(ctx, terminal().next));
    await vi.waitFor(async () => expect(await rows([ctx.callId])).toHaveLength(1), { timeout: 30_000, interval: 20 });
    await mw.dispose!();
  });

  it("writes a full batch at once and holds a partial one until the timer", async () => {
    const mw = await setUpPlugin(audit, { table, batchSize: 3, flushIntervalMs: 60_000 }, { postgres: pool });
    const ctxs = [agentContext(), agentContext(), agentContext()];
    await collect(mw.process(ctxs[0]!, terminal().next));
    await collect(mw.process(ctxs[1]!, terminal().next));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await rows(ctxs.map((c) => c.callId))).toHaveLength(0);
    await collect(mw.process(ctxs[2]!, terminal().next));
    await vi.waitFor(async () => expect(await rows(ctxs.map((c) => c.callId))).toHaveLength(3), { timeout: 30_000, interval: 20 });
    await mw.dispose!();
  });

  it("writes a row per tool call with the arguments' hash, never the arguments: ran, refused, and skipped by a limit", async () => {
    const mw = await setUpPlugin(audit, { table }, { postgres: pool });
    const callIds: string[] = [];
    const spy: Middleware = { name: "spy", process: (ctx, next) => (callIds.push(ctx.callId), next()) };
    const model = scriptedModel((n) =>
      n === 2
        ? { say: "3" }
        : {
            calls: [
              ["add", '{"a":1,"b":2}'],
              ["nope", '{"secret":"hunter2"}'],
            ],
          },
    );
    const { executor, store } = toolExecutor(model, [adder()], [mw, spy]);
    try {
      await executor.execute(input(), callInfo());
      // One step allowed: the step's calls are skipped without running.
      await executor.execute(input({ options: { maxSteps: 1 } }), callInfo());
    } finally {
      await store.close();
    }
    await mw.dispose!();
    const [ran, limited] = callIds as [string, string];

    const tools = await pool.query<ToolCallRow & { id: string }>(`select * from ${toolCallsTable(table)} where call_id = any($1) order by id`, [callIds]);
    const seen = tools.rows.map((r) => [r.call_id, r.step, r.tool_call_id, r.tool, r.outcome, r.arguments_sha256]);
    expect(seen).toEqual([
      // A refused call's result comes at once; the one that runs, when it ends.
      [ran, 1, "c1_1", "nope", "denied", sha256('{"secret":"hunter2"}')],
      [ran, 1, "c1_0", "add", "ok", sha256('{"a":1,"b":2}')],
      [limited, 1, "c3_0", "add", "skipped", sha256('{"a":1,"b":2}')],
      [limited, 1, "c3_1", "nope", "skipped", sha256('{"secret":"hunter2"}')],
    ]);
    for (const r of tools.rows) {
      expect(r).toMatchObject({ agent_id: "helper" });
      expect(r.duration_ms).toBeGreaterThanOrEqual(0);
      expect(JSON.stringify(r)).not.toMatch(/hunter2|"a":1/);
    }
    // Besides the row per run.
    expect((await rows(callIds)).map((r) => [r.call_id, r.status])).toEqual([
      [ran, "OK"],
      [limited, "OK"],
    ]);
  });

  it("accepts a schema-qualified table", async () => {
    const mw = await setUpPlugin(audit, { table: qualified }, { postgres: pool });
    const ctx = agentContext();
    await collect(mw.process(ctx, terminal().next));
    await mw.dispose!();
    expect(await rows([ctx.callId], qualified)).toHaveLength(1);
  });

  it("refuses a table name that is not a safe identifier", async () => {
    for (const bad of ["audit; drop table x", "Audit", "a.b.c", "1audit", ""]) {
      await expect(setUpPlugin(audit, { table: bad }, { postgres: pool })).rejects.toThrow(/table/);
    }
  });

  it("fails setup with a clear error when PostgreSQL is down", async () => {
    const dead = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:1/test", connectionTimeoutMillis: 500 });
    try {
      await expect(setUpPlugin(audit, { table }, { postgres: dead })).rejects.toThrow(
        new RegExp(`audit: cannot prepare table "${table}": cannot migrate audit:${table}: cannot connect to PostgreSQL`),
      );
    } finally {
      await dead.end();
    }
  });

  it("fails setup when the table's schema does not exist", async () => {
    await expect(setUpPlugin(audit, { table: `no_such_schema_${table}.audit` }, { postgres: pool })).rejects.toThrow(
      /audit: cannot prepare table .*migration 1 "create audit table".*schema "no_such_schema_/,
    );
  });
});
