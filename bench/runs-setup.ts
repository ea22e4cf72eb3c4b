// The runs phase's fixtures: a PostgreSQL schema of its own (created here,
// dropped at the end with its migration rows), the servers' config (runs and
// sessions in that schema, the bench_const tool, the MCP test fixture for a
// tool that waits), and the per-statement round-trip counts of a server
// started with bench/runs-pg-count.ts, named after the run store's statements.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import pg from "pg";
import { runSql } from "../src/runs/postgres-sql.ts";
import { freePort, root, startOurs, type ServerChild } from "./children.ts";
import { CONST_TOOL } from "./const-tool.ts";
import type { StatementCount } from "./runs-pg-count.ts";
import { oursConfig } from "./servers.ts";

/** The agents of the phase: five steps and three tool calls; and one with room for 1,000 events. */
export const RUNNER = "runner";
export const LONG = "long";
/** The MCP fixture's tool that sleeps (ms), as the long agent calls it. */
export const SLOW_TOOL = "fx__slow";

/** The database: DATABASE_URL, or the machine's PostgreSQL. */
export const databaseUrl = (): string => process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** A fresh schema on `pool`; `drop()` removes it, its tables and their migration rows. */
export async function benchSchema(pool: pg.Pool): Promise<{ schema: string; drop: () => Promise<void> }> {
  const schema = `bench_runs_${randomUUID().replace(/-/g, "").slice(0, 12)}`;
  await pool.query(`create schema ${schema}`);
  return {
    schema,
    async drop() {
      await pool.query(`drop schema ${schema} cascade`);
      await pool
        .query("delete from qingyu_schema_migrations where component = any($1::text[])", [[`sessions:${schema}`, `runs:${schema}`]])
        .catch(() => undefined);
    },
  };
}

/** A server journaling runs in `schema`: the bench's default server plus the tools and agents of the phase. */
export function runsConfig(schema: string): Record<string, unknown> {
  const base = oursConfig();
  const limits = { maxSteps: 1000, maxToolCalls: 10_000 };
  return {
    ...base,
    postgres: { url: databaseUrl() },
    // Redis gives the runs their live feed, as a shared deployment has it: a second replica's watchers replay from it.
    // Keys under the bench's own prefix; a run's feed expires an hour after the run ends.
    ...(process.env.BENCH_RUNS_FEED === "off" ? {} : { redis: { url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" } }),
    sessions: { store: "postgres", postgresSchema: schema, redisKeyPrefix: `qingyu:bench:${schema}:` },
    runs: { store: "postgres" },
    tools: {
      plugins: ["bench-const"],
      mcp: { fx: { command: process.execPath, args: [join(root, "test/fixtures/mcp/server.mjs")] } },
    },
    agents: [
      ...(base.agents as unknown[]),
      // The output schema gives the fifth step: the first answer is not JSON, the one repair step answers again.
      { id: RUNNER, provider: "echo", model: "echo-1", tools: [CONST_TOOL], outputSchema: { type: "object", required: ["ok"] }, limits },
      { id: LONG, provider: "echo", model: "echo-1", tools: [CONST_TOOL, SLOW_TOOL], limits },
    ],
  };
}

/** Our server with the round-trip counter preloaded; `counts()` reads its totals. */
export interface CountedServer extends ServerChild {
  counts(): Promise<Record<string, StatementCount>>;
}

export async function startCounted(name: string, config: unknown, flags: readonly string[] = []): Promise<CountedServer> {
  const countPort = await freePort();
  const server = await startOurs(name, config, { BENCH_RUNS_COUNT_PORT: String(countPort) }, ["--import", join(root, "bench/runs-pg-count.ts"), ...flags]);
  return {
    ...server,
    async counts() {
      const res = await fetch(`http://127.0.0.1:${countPort}/`);
      return (await res.json()) as Record<string, StatementCount>;
    },
  };
}

/** Round trips by statement: the run store's by their name in runSql, anything else by its first words. */
export type NamedCounts = Record<string, StatementCount>;

/** What happened between two readings of a server's counts, by statement name. */
export function countsBetween(schema: string, before: Record<string, StatementCount>, after: Record<string, StatementCount>): NamedCounts {
  const names = new Map(Object.entries(runSql(schema)).map(([name, text]) => [text, `runs.${name}`]));
  const out: NamedCounts = {};
  for (const [text, c] of Object.entries(after)) {
    const b = before[text] ?? { n: 0, ms: 0 };
    if (c.n === b.n) continue;
    const name = names.get(text) ?? `other: ${text.replace(/\s+/g, " ").trim().slice(0, 48)}`;
    const o = (out[name] ??= { n: 0, ms: 0 });
    o.n += c.n - b.n;
    o.ms += c.ms - b.ms;
  }
  return out;
}

/** Round trips in `counts` (the run store's only, with `runsOnly`). */
export const roundTrips = (counts: NamedCounts, runsOnly = false): number =>
  Object.entries(counts).reduce((sum, [name, c]) => sum + (runsOnly && !name.startsWith("runs.") ? 0 : c.n), 0);
