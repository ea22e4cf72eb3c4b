import * as grpc from "@grpc/grpc-js";
import { createHash, randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import type { AuditRow } from "../../src/plugins/builtin/audit/writer.ts";
import { databaseUrl } from "../support/services.ts";

const A = AgentService.method;
const DATABASE_URL = databaseUrl();

/** A row as the table holds it: the writer's own row type. */
type Row = AuditRow;

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A server whose pipeline audits every call into `table` before validation sees it. */
function config(table: string, flushIntervalMs: number) {
  return {
    log: { level: "warn" },
    postgres: { url: DATABASE_URL },
    pipeline: [{ plugin: "audit", options: { table, flushIntervalMs } }, "validation"],
    providers: { echo: { plugin: "echo" }, slow: { plugin: "echo", options: { tokenDelayMs: 100 } } },
    agents: [
      { id: "echo", provider: "echo", model: "echo-1" },
      { id: "slow", provider: "slow", model: "echo-slow" },
    ],
    plugins: { dirs: [] },
  };
}

describe(`audit rows in PostgreSQL from a real server process (${runtime})`, () => {
  // A fresh table per run (created by the plugin's migration), so Node and Deno runs never share rows.
  const table = `e2e_audit_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  let pool: pg.Pool;
  let server: ServerProcess;
  let client: TestClient;

  /** Rows of the given users, polled until there are `count` of them (at most 5 s). */
  async function rowsOf(users: string[], count: number): Promise<Row[]> {
    let rows: Row[] = [];
    for (const deadline = Date.now() + 5_000; Date.now() < deadline; await sleep(25)) {
      rows = (await pool.query<Row>(`select * from "${table}" where user_id = any($1) order by id`, [users])).rows;
      if (rows.length >= count) break;
    }
    return rows;
  }

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    server = await startServer(config(table, 50));
    client = new TestClient(server.grpcPort);
  });

  afterAll(async () => {
    client?.close();
    await server?.stop();
    if (pool) {
      await pool.query(`drop table if exists "${table}"`);
      await pool.query("delete from qingyu_schema_migrations where component = $1", [`audit:${table}`]);
      await pool.end();
    }
  });

  it("writes one row per call: OK with tokens, INVALID_ARGUMENT, NOT_FOUND, and a stream the client cancelled", async () => {
    const run = randomUUID().slice(0, 8);
    const users = { ok: `ok-${run}`, invalid: `invalid-${run}`, missing: `missing-${run}`, cancelled: `cancel-${run}` };

    const okTask = `what is 2 + 2? ${run}`;
    const ok = await client.unary(AgentService, A.execute, { agentId: "echo", task: okTask, userId: users.ok });
    expect(ok.result?.success).toBe(true);

    const invalid = await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "", userId: users.invalid }));
    expect(grpc.status[invalid.code]).toBe("INVALID_ARGUMENT");

    const missingTask = `anyone there? ${run}`;
    const missing = await statusOf(client.unary(AgentService, A.execute, { agentId: "no-such-agent", task: missingTask, userId: users.missing }));
    expect(grpc.status[missing.code]).toBe("NOT_FOUND");

    // The slow echo sends a word every 100 ms; the client leaves after the first.
    const cancelTask = `one two three four five six seven eight ${run}`;
    const call = client.stream(AgentService, A.executeStream, { agentId: "slow", task: cancelTask, userId: users.cancelled });
    await new Promise<void>((resolve, reject) => {
      call.on("data", (m) => {
        if (m.event.case === "delta") {
          call.cancel();
          resolve();
        }
      });
      call.on("error", (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? resolve() : reject(err)));
    });

    const rows = await rowsOf(Object.values(users), 4);
    expect(rows.map((r) => r.user_id).sort()).toEqual(Object.values(users).sort());
    const byUser = (user: string) => rows.find((r) => r.user_id === user)!;

    expect(byUser(users.ok)).toMatchObject({
      agent_id: "echo",
      status: "OK",
      code: 0,
      input_tokens: ok.result!.usage!.inputTokens,
      output_tokens: ok.result!.usage!.outputTokens,
      input_sha256: sha256(okTask),
      input: null,
      error: null,
      principal: null,
      session_id: null,
    });
    expect(byUser(users.invalid)).toMatchObject({
      agent_id: "echo",
      status: "INVALID_ARGUMENT",
      code: grpc.status.INVALID_ARGUMENT,
      input_tokens: null,
      input_sha256: sha256(""),
      input: null,
    });
    expect(byUser(users.invalid).error).toContain("task");
    expect(byUser(users.missing)).toMatchObject({
      agent_id: "no-such-agent",
      status: "NOT_FOUND",
      code: grpc.status.NOT_FOUND,
      input_tokens: null,
      input_sha256: sha256(missingTask),
      input: null,
    });
    expect(byUser(users.missing).error).toContain("no-such-agent");
    expect(byUser(users.cancelled)).toMatchObject({
      agent_id: "slow",
      status: "CANCELLED",
      code: grpc.status.CANCELLED,
      input_tokens: null,
      input_sha256: sha256(cancelTask),
      input: null,
    });
    // Every call has its own id; durations are plausible.
    expect(new Set(rows.map((r) => r.call_id)).size).toBe(4);
    for (const r of rows) expect(r.duration_ms).toBeGreaterThanOrEqual(0);

    // Nothing more arrives later (one row per call, not one per attempt or event): several flush intervals on.
    await sleep(300);
    const later = await pool.query(`select 1 from "${table}" where user_id = any($1)`, [Object.values(users)]);
    expect(later.rowCount).toBe(4);
  });

  it("flushes the rows of calls made just before SIGTERM", async () => {
    // A flush interval far beyond the test: the row can only reach the table through the shutdown flush.
    const late = await startServer(config(table, 60_000));
    const lateClient = new TestClient(late.grpcPort);
    const user = `late-${randomUUID().slice(0, 8)}`;
    const task = `last words ${user}`;
    try {
      const res = await lateClient.unary(AgentService, A.execute, { agentId: "echo", task, userId: user });
      expect(res.result?.success).toBe(true);
      // Still queued in the process, not yet written.
      expect((await pool.query(`select 1 from "${table}" where user_id = $1`, [user])).rowCount).toBe(0);
      expect(await late.stop("SIGTERM")).toBe(0);
    } finally {
      lateClient.close();
      await late.stop("SIGKILL");
    }
    const rows = (await pool.query<Row>(`select * from "${table}" where user_id = $1`, [user])).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ agent_id: "echo", status: "OK", code: 0, input_sha256: sha256(task), input: null });
  });
});
