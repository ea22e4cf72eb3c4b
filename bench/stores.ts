// `npm run bench:stores`: session-store operations per second on each store,
// against raw ioredis and pg round trips measured in the same run and the same
// shape (one process, IN_FLIGHT operations outstanding). A store operation
// that is one round trip should come close to the raw row; one that is not
// shows it here. Needs the local Redis and PostgreSQL (REDIS_URL, DATABASE_URL).
import { Redis } from "ioredis";
import pg from "pg";
import pino from "pino";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { HotCopy } from "../src/sessions/hot-copy.ts";
import { MemorySessionStore } from "../src/sessions/memory-store.ts";
import { PostgresSessionStore } from "../src/sessions/postgres-store.ts";
import { RedisSessionStore } from "../src/sessions/redis-store.ts";
import { TieredSessionStore } from "../src/sessions/tiered-store.ts";
import type { SessionStore } from "../src/sessions/types.ts";
import { root } from "./children.ts";
import { writeJson } from "./report.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const IN_FLIGHT = 32;
const HISTORY = 20;
const log = pino({ level: "warn" });

/** Runs `op` with IN_FLIGHT outstanding for SECONDS; operations per second. */
async function rate(op: (i: number) => Promise<unknown>): Promise<number> {
  let done = 0;
  const end = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async (_, w) => {
      for (let i = w; performance.now() < end; i += IN_FLIGHT) {
        await op(i);
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

async function measure(name: string, store: SessionStore): Promise<Record<string, number>> {
  // Sessions with a history as a conversation would have, so reads carry the prompt's messages.
  const ids: string[] = [];
  for (let i = 0; i < 200; i++) {
    const s = await store.create({ userId: `bench-${i % 10}`, agentId: "echo", metadata: {}, ttlSeconds: 600 });
    for (let t = 0; t < HISTORY / 2; t++)
      await store.appendMessages(s.id, [
        { role: "user", content: `question ${t} about the quarterly report` },
        { role: "assistant", content: `answer ${t}: three short sentences for the board` },
      ]);
    ids.push(s.id);
  }
  const pick = (i: number) => ids[i % ids.length]!;
  const out = {
    "create/s": await rate(() => store.create({ userId: "bench-x", agentId: "echo", metadata: { k: "v" }, ttlSeconds: 600 })),
    "get/s (20 messages)": await rate((i) => store.get(pick(i), { messages: HISTORY })),
    "append turn/s": await rate((i) =>
      store.appendMessages(pick(i), [
        { role: "user", content: "q" },
        { role: "assistant", content: "a" },
      ]),
    ),
    // A conversation turn's store work: its history read, then its write.
    "turn/s (get + append)": await rate(async (i) => {
      await store.get(pick(i), { messages: HISTORY });
      await store.appendMessages(pick(i), [
        { role: "user", content: "q" },
        { role: "assistant", content: "a" },
      ]);
    }),
    "save-checkpoint/s": await rate((i) => store.saveCheckpoint(pick(i), { data: { step: i, notes: "x".repeat(200) }, expectedVersion: -1, keep: 20 })),
  };
  process.stderr.write(
    `  ${name.padEnd(15)} ${Object.entries(out)
      .map(([k, v]) => `${k} ${v.toFixed(0)}`)
      .join("  ")}\n`,
  );
  return out;
}

async function main(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test", max: 10 });
  const prefix = `qingyu:bench:${randomUUID()}:`;
  const schema = `bench_${randomUUID().replace(/-/g, "").slice(0, 12)}`;
  await pool.query(`create schema ${schema}`);
  try {
    const raw = {
      "redis GET round trip/s": await rate(() => redis.get(`${prefix}none`)),
      "redis EVALSHA round trip/s": await (async () => {
        const sha = (await redis.script("LOAD", "return 1")) as string;
        return rate(() => redis.evalsha(sha, 0));
      })(),
      "pg SELECT 1 round trip/s": await rate(() => pool.query("select 1")),
      // A committed write is bounded by the WAL flush, not the network: the fair baseline for writes.
      "pg INSERT (committed) round trip/s": await (async () => {
        await pool.query(`create table ${schema}.raw_writes (id bigserial primary key, body text)`);
        return rate(() => pool.query(`insert into ${schema}.raw_writes (body) values ($1)`, ["x"]));
      })(),
    };
    process.stderr.write(
      `  raw             ${Object.entries(raw)
        .map(([k, v]) => `${k} ${v.toFixed(0)}`)
        .join("  ")}\n`,
    );
    const postgres = await PostgresSessionStore.open(pool, { schema, sweepIntervalMs: 60_000, log });
    const stores: Record<string, SessionStore> = {
      memory: new MemorySessionStore(60_000),
      redis: new RedisSessionStore(redis, { keyPrefix: prefix }),
      postgres,
      "redis+postgres": new TieredSessionStore(postgres, new HotCopy(redis, `${prefix}t:`, 50), { retryAfterMs: 1000 }, log),
    };
    const results: Record<string, Record<string, number>> = {};
    for (const [name, store] of Object.entries(stores)) results[name] = await measure(name, store);

    const ratio = (x: number, base: number) => `${(x / base).toFixed(2)}x`;
    const lines = [
      `| operation (${IN_FLIGHT} in flight) | ${Object.keys(stores).join(" | ")} |`,
      `|---|${Object.keys(stores)
        .map(() => "---")
        .join("|")}|`,
    ];
    for (const op of Object.keys(results.memory!)) {
      lines.push(
        `| ${op} | ${Object.keys(stores)
          .map((s) => Math.round(results[s]![op]!).toLocaleString("en-US"))
          .join(" | ")} |`,
      );
    }
    console.log(`\n${lines.join("\n")}\n`);
    console.log(
      `raw round trips/s: redis GET ${Math.round(raw["redis GET round trip/s"])}, redis EVALSHA ${Math.round(raw["redis EVALSHA round trip/s"])}, pg SELECT 1 ${Math.round(raw["pg SELECT 1 round trip/s"])}, pg INSERT ${Math.round(raw["pg INSERT (committed) round trip/s"])}`,
    );
    const r = results;
    console.log(
      [
        `redis store / raw EVALSHA: get ${ratio(r.redis!["get/s (20 messages)"]!, raw["redis EVALSHA round trip/s"])}, append ${ratio(r.redis!["append turn/s"]!, raw["redis EVALSHA round trip/s"])}, save-checkpoint ${ratio(r.redis!["save-checkpoint/s"]!, raw["redis EVALSHA round trip/s"])}`,
        `postgres store: get / raw SELECT 1 ${ratio(r.postgres!["get/s (20 messages)"]!, raw["pg SELECT 1 round trip/s"])}; append / raw INSERT ${ratio(r.postgres!["append turn/s"]!, raw["pg INSERT (committed) round trip/s"])}, save-checkpoint / raw INSERT ${ratio(r.postgres!["save-checkpoint/s"]!, raw["pg INSERT (committed) round trip/s"])}`,
        `tiered get / raw redis GET: ${ratio(r["redis+postgres"]!["get/s (20 messages)"]!, raw["redis GET round trip/s"])}`,
      ].join("\n"),
    );
    writeJson(join(root, "bench/results/stores.json"), { date: new Date().toISOString(), seconds: SECONDS, inFlight: IN_FLIGHT, raw, results });
    for (const store of Object.values(stores)) await store.close();
  } finally {
    const keys = await redis.keys(`${prefix}*`);
    for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
    await pool.query(`drop schema ${schema} cascade`);
    await pool.query(`delete from qingyu_schema_migrations where component = $1`, [`sessions:${schema}`]).catch(() => undefined);
    redis.disconnect();
    await pool.end();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:stores failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
