// Every string and integer field of every SessionService and AgentService
// request, set to an extreme, on both ports of a real server per store: no call
// may end INTERNAL or UNKNOWN (those mean "our bug"; any named status is fine),
// and the server still serves afterwards.
import { fromBinary, type DescMethod } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as Serving } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { AgentService, ExecuteBatchResponseSchema } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { extremeCases, type ExtremeCase } from "../support/extreme-requests.ts";
import { TestClient } from "../support/grpc-client.ts";
import { health } from "../support/health.ts";
import { TEST_TIMEOUT_MS } from "../support/limits.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { databaseUrl, redisUrl } from "../support/services.ts";

const S = SessionService.method;
const REDIS_URL = redisUrl();
const DATABASE_URL = databaseUrl();
const USER = "extremes-user";
// Calls in flight at once per port: enough to keep the server busy, few enough for two shared cores.
const PARALLEL = 8;

const runId = randomUUID().replaceAll("-", "").slice(0, 12);
const schema = `e2e_extremes_${runId}`;
const prefix = `qingyu:e2e:extremes:${runId}:`;
const stores = ["memory", "redis", "postgres", "redis+postgres"] as const;
type Store = (typeof stores)[number];

function config(store: Store) {
  return {
    log: { level: "error" },
    redis: { url: REDIS_URL },
    postgres: { url: DATABASE_URL },
    // Every accepted save keeps its checkpoint, so the fixture one stays readable throughout.
    sessions: { store, redisKeyPrefix: `${prefix}${store}:`, postgresSchema: schema, checkpointsKept: 1000 },
    agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
    plugins: { dirs: [] },
  };
}

const env = { REDIS_URL, DATABASE_URL };

const b64 = (text: string) => Buffer.from(text).toString("base64url");

/** Page tokens well-formed enough to pass base64 and JSON, forged in what they hold. */
function forgedTokens(real: string): Array<{ label: string; value: string }> {
  const id = randomUUID();
  const forged: Array<[string, string]> = [
    ["time 1e300", JSON.stringify([1e300, id])],
    ["time 1e999 (Infinity)", `[1e999,"${id}"]`],
    ["time past the last Date", JSON.stringify([8.64e15 + 1, id])],
    ["time in year 10000", JSON.stringify([Date.UTC(10000, 0, 1), id])],
    ["time 2^63-1", `[9223372036854775807,"${id}"]`],
    ["time -1", JSON.stringify([-1, id])],
    ["time 1.5", JSON.stringify([1.5, id])],
    ["time a string", JSON.stringify(["0", id])],
    ["id not a UUID", JSON.stringify([0, "not-a-uuid"])],
    ["id upper-case", JSON.stringify([0, id.toUpperCase()])],
    ["id a number", JSON.stringify([0, 5])],
    ["id with NUL", JSON.stringify([0, "\u0000"])],
    ["three elements", JSON.stringify([0, id, "extra"])],
    ["an object", JSON.stringify({ time: 0, id })],
    ["null", "null"],
  ];
  return [
    ...forged.map(([label, json]) => ({ label: `forged token: ${label}`, value: b64(json) })),
    { label: "real token + 1 char", value: `${real}A` },
    { label: "real token - 1 char", value: real.slice(0, -1) },
  ];
}

/** What one call ended with: a gRPC status code, plus the codes of batch items. */
interface Outcome {
  code: number;
  message: string;
  itemCodes: number[];
}

const CONNECT_CODES: Record<string, number> = Object.fromEntries(
  Object.entries(grpc.status)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [k.toLowerCase(), v as number]),
);

function grpcCall(client: grpc.Client, c: ExtremeCase): Promise<Outcome> {
  const path = `/${c.service.typeName}/${c.method.name}`;
  const same = (b: Buffer) => b;
  const options = { deadline: Date.now() + 15_000 };
  return new Promise((resolve) => {
    if (c.method.methodKind === "server_streaming") {
      const call = client.makeServerStreamRequest(path, same, same, Buffer.from(c.grpc!), new grpc.Metadata(), options);
      call.on("data", () => undefined);
      call.on("error", () => undefined);
      call.on("status", (s: grpc.StatusObject) => resolve({ code: s.code, message: s.details, itemCodes: [] }));
      return;
    }
    client.makeUnaryRequest(path, same, same, Buffer.from(c.grpc!), new grpc.Metadata(), options, (err, res?: Buffer) => {
      if (err) return resolve({ code: err.code ?? grpc.status.UNKNOWN, message: err.details, itemCodes: [] });
      resolve({ code: grpc.status.OK, message: "", itemCodes: batchCodes(c.method, res!) });
    });
  });
}

function batchCodes(method: DescMethod, body: Buffer): number[] {
  if (method.output !== ExecuteBatchResponseSchema) return [];
  return fromBinary(ExecuteBatchResponseSchema, body).items.flatMap((item) => (item.outcome.case === "error" ? [item.outcome.value.code] : []));
}

async function connectCall(port: number, c: ExtremeCase): Promise<Outcome> {
  const url = `http://127.0.0.1:${port}/${c.service.typeName}/${c.method.name}`;
  const streaming = c.method.methodKind === "server_streaming";
  const json = Buffer.from(c.connect!);
  let body: Buffer = json;
  if (streaming) {
    body = Buffer.alloc(5 + json.length);
    body.writeUInt32BE(json.length, 1);
    json.copy(body, 5);
  }
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": streaming ? "application/connect+json" : "application/json" },
    body,
    signal: AbortSignal.timeout(15_000),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  const named = (error: { code?: string; message?: string } | undefined): Outcome => ({
    code: error?.code ? (CONNECT_CODES[error.code] ?? -1) : grpc.status.OK,
    message: error?.message ?? "",
    itemCodes: [],
  });
  if (!streaming) {
    const text = bytes.toString("utf8");
    const parsed = text.startsWith("{") ? (JSON.parse(text) as Record<string, any>) : undefined;
    if (res.status !== 200) return parsed?.code ? named(parsed) : { code: -res.status, message: text.slice(0, 200), itemCodes: [] };
    const items = (parsed?.items ?? []) as Array<{ error?: { code?: number } }>;
    return { ...named(undefined), itemCodes: items.flatMap((i) => (i.error ? [i.error.code ?? 0] : [])) };
  }
  if (res.status !== 200) return { code: -res.status, message: bytes.toString("utf8").slice(0, 200), itemCodes: [] };
  // Streaming: the end-of-stream envelope (flag 0x02) says how it ended.
  for (let at = 0; at + 5 <= bytes.length;) {
    const length = bytes.readUInt32BE(at + 1);
    if (bytes[at]! & 0x02)
      return named((JSON.parse(bytes.subarray(at + 5, at + 5 + length).toString("utf8")) as { error?: { code?: string; message?: string } }).error);
    at += 5 + length;
  }
  return { code: -1, message: "stream ended without an end-of-stream message", itemCodes: [] };
}

/** Runs `work` over `items`, `parallel` at a time. */
async function pool<T>(items: T[], parallel: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

const BAD = new Set<number>([grpc.status.INTERNAL, grpc.status.UNKNOWN]);
const isBad = (code: number) => BAD.has(code) || code < 0 || code === undefined;

/**
 * Cases issue #14 named, which must be INVALID_ARGUMENT naming the field on
 * every store (elsewhere any status but INTERNAL/UNKNOWN will do).
 */
const NAMED: Array<[RegExp, string]> = [
  [/^(ListSessions|ListCheckpoints) page_token = (forged token|real token [+-])/, "page_token"],
  [/^SaveCheckpoint expected_version = (-1|2\^53|2\^53\+1|2\^63-1|-2\^63)$/, "expected_version"],
  [/^\w+ user_id = NUL/, "user_id"],
  [/^CreateSession metadata (key|value) = NUL/, "metadata"],
  [/^SaveCheckpoint data (key|value) = (NUL|lone)/, "data"],
  [/^SaveCheckpoint data number = (NaN|-?Infinity)$/, "data"],
];

let pgPool: pg.Pool;
let redis: Redis;
const servers = new Map<Store, ServerProcess>();

beforeAll(async () => {
  pgPool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  redis = new Redis(REDIS_URL);
  await pgPool.query(`create schema ${schema}`);
  // Started together: most of a start is compiling, and the four overlap on two cores.
  const started = await Promise.allSettled(stores.map(async (store) => servers.set(store, await startServer(config(store), env))));
  const failed = started.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
});

afterAll(async () => {
  await Promise.all([...servers.values()].map((s) => s.stop()));
  if (pgPool) {
    await pgPool.query(`drop schema if exists ${schema} cascade`);
    await pgPool.query("delete from qingyu_schema_migrations where component = $1", [`sessions:${schema}`]);
    await pgPool.end();
  }
  if (redis) {
    const keys = await redis.keys(`${prefix}*`);
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
    redis.disconnect();
  }
});

// Node only: under this volume of odd requests Deno 2.9's node:http2 aborts the whole process
// (nghttp2 find_stream_on_goaway_func assertion, or a double free) when the client closes its
// connection — Deno's bug, listed in README's Deno section.
describe.runIf(runtime === "node").each(stores)(`extreme field values, store %s (${runtime})`, (store) => {
  let server: ServerProcess | undefined;
  let client: TestClient;

  beforeAll(() => {
    server = servers.get(store)!;
    client = new TestClient(server.grpcPort);
  });

  afterAll(() => client?.close());

  it("no request gets INTERNAL or UNKNOWN on either port, and the server still serves", { timeout: 2 * TEST_TIMEOUT_MS }, async () => {
    const create = async () => (await client.unary(SessionService, S.createSession, { userId: USER, agentId: "echo" })).session!.sessionId;
    const [session, executed, other, victim] = [await create(), await create(), await create(), await create()];
    const saved = async () => (await client.unary(SessionService, S.saveCheckpoint, { sessionId: session, userId: USER, data: { n: 1 } })).checkpoint!;
    const checkpoint = await saved();
    await saved();
    const sessionToken = (await client.unary(SessionService, S.listSessions, { userId: USER, pageSize: 1 })).nextPageToken;
    const checkpointToken = (await client.unary(SessionService, S.listCheckpoints, { sessionId: session, userId: USER, pageSize: 1 })).nextPageToken;
    expect(sessionToken && checkpointToken && other).toBeTruthy();

    const turn = { agentId: "echo", task: "hi", sessionId: executed, userId: USER, metadata: { k: "v" }, options: { maxTokens: 16 } };
    const cases = [
      ...extremeCases(
        SessionService,
        {
          createSession: { userId: USER, agentId: "echo", metadata: { k: "v" }, ttlSeconds: 60 },
          getSession: { sessionId: session, userId: USER },
          listSessions: { userId: USER, pageSize: 1, pageToken: sessionToken },
          // Its own session: a base request that succeeds deletes it.
          deleteSession: { sessionId: victim, userId: USER },
          saveCheckpoint: { sessionId: session, userId: USER, data: { k: "v" } },
          getCheckpoint: { sessionId: session, checkpointId: checkpoint.checkpointId, userId: USER },
          listCheckpoints: { sessionId: session, userId: USER, pageSize: 1, pageToken: checkpointToken },
        },
        // Both listings' page_token: forged from the session listing's and the checkpoint listing's own tokens.
        { page_token: [...forgedTokens(sessionToken), ...forgedTokens(checkpointToken)] },
      ),
      ...extremeCases(AgentService, { execute: turn, executeStream: turn, executeBatch: { requests: [turn], maxConcurrency: 1 }, listAgents: {} }),
    ];

    const failures: string[] = [];
    let named = 0;
    const check = (port: string, c: ExtremeCase, o: Outcome) => {
      const said = `${port} ${c.name}: ${grpc.status[o.code] ?? o.code} ${o.message.slice(0, 300)}`;
      if (isBad(o.code)) failures.push(said);
      for (const code of o.itemCodes) if (isBad(code)) failures.push(`${port} ${c.name}: batch item ${grpc.status[code] ?? code}`);
      const field = NAMED.find(([pattern]) => pattern.test(c.name))?.[1];
      if (field === undefined) return;
      named++;
      if (o.code !== grpc.status.INVALID_ARGUMENT || !o.message.includes(`${field}: `)) failures.push(`${said} (wanted INVALID_ARGUMENT naming ${field})`);
    };
    const raw = new grpc.Client(`127.0.0.1:${server!.grpcPort}`, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
    try {
      await Promise.all([
        pool(
          cases.filter((c) => c.grpc),
          PARALLEL,
          async (c) => check("grpc", c, await grpcCall(raw, c)),
        ),
        pool(
          cases.filter((c) => c.connect),
          PARALLEL,
          async (c) => check("connect", c, await connectCall(server!.httpPort, c)),
        ),
      ]);
    } finally {
      raw.close();
    }
    console.info(
      `${store}: ${cases.length} requests, each on both ports where it can be sent (${named} calls that must name their field); ${failures.length} failed`,
    );
    expect(failures).toEqual([]);
    expect(named).toBeGreaterThan(100);

    // Still serving once the connection that carried the extremes has closed: health on both ports, and a read.
    const serving = await health(client).catch(
      (err: unknown) => `${String(err)}; server exit ${server!.child.exitCode ?? server!.child.signalCode}: ${server!.stderr().slice(-500)}`,
    );
    expect(serving).toBe(Serving.SERVING);
    const res = await fetch(`http://127.0.0.1:${server!.httpPort}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(await res.json()).toEqual({ status: "SERVING" });
    const read = await client.unary(SessionService, S.getSession, { sessionId: session, userId: USER });
    expect(read.session?.sessionId).toBe(session);
  });
});
