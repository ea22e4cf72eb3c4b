// Runs and events for the run-store tests, and PostgreSQL run stores on schemas of
// their own (each dropped, with its migration record, by dropSchemas).
import { randomUUID } from "node:crypto";
import pg from "pg";
import pino from "pino";
import { PostgresRunStore } from "../../src/runs/postgres-store.ts";
import type { NewRun, RunLogEvent, SequencedEvent } from "../../src/runs/types.ts";

/** The owner every fixture run starts with. */
export const OWNER = "replica-a";

const log = pino({ level: "silent" });
let users = 0;

/** A user id no other test (or earlier run sharing the database) has used. */
export const freshUser = () => `user-${process.pid}-${Date.now()}-${++users}`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A running run owned by OWNER for a minute, of a fresh user and session unless overridden. */
export function newRun(overrides: Partial<NewRun> = {}): NewRun {
  const userId = overrides.userId ?? freshUser();
  const sessionId = overrides.sessionId ?? randomUUID();
  return {
    id: randomUUID(),
    userId,
    agentId: "helper",
    sessionId,
    idempotencyKey: "",
    status: "running",
    input: { agentId: "helper", task: "add 2 and 3", sessionId, userId, metadata: { team: "a" }, options: { temperature: 0.5 } },
    settings: { background: false, onDisconnect: "continue", onSessionBusy: "reject", callerTools: [] },
    owner: OWNER,
    leaseMs: 60_000,
    ...overrides,
  };
}

/** Events numbered from `from`, one per entry. */
export function seq(from: number, events: RunLogEvent[]): SequencedEvent[] {
  return events.map((event, i) => ({ seq: from + i, time: 1_700_000_000_000 + from + i, event }));
}

export const accepted = (): SequencedEvent[] => seq(1, [{ type: "accepted" }]);

/** Creates schemas for PostgreSQL run stores, and drops them all at the end. */
export class Schemas {
  private readonly made: string[] = [];
  private readonly prefix = `runs_${randomUUID().replace(/-/g, "").slice(0, 10)}`;

  constructor(private readonly pool: pg.Pool) {}

  /** A fresh empty schema's name. */
  async fresh(): Promise<string> {
    const name = `${this.prefix}_${this.made.length}`;
    await this.pool.query(`create schema ${name}`);
    this.made.push(name);
    return name;
  }

  /** A store on a fresh, migrated schema (on `pool`, default the one given). */
  async store(pool = this.pool): Promise<PostgresRunStore> {
    return PostgresRunStore.open(pool, { schema: await this.fresh(), log });
  }

  async dropAll(): Promise<void> {
    for (const s of this.made) await this.pool.query(`drop schema if exists ${s} cascade`);
    await this.pool.query("delete from qingyu_schema_migrations where component = any($1)", [this.made.map((s) => `runs:${s}`)]);
  }
}

export { log as silentLog };
