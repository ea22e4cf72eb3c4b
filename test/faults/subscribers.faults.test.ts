// EventService subscribers that stop reading, and events made large or attributed by hostile callers.
// (a) A Subscribe client that stops reading at the HTTP/2 level (gRPC port) or stops reading its
//     socket (Connect port, HTTP/1.1) while thousands of events are published: the server ends it
//     without the client reading, within a bounded time and with bounded memory (RST_STREAM
//     ENHANCE_YOUR_CALM, which gRPC clients report as RESOURCE_EXHAUSTED; on HTTP/1.1, a TCP reset),
//     while a subscriber that reads keeps receiving every event.
// (b) With events.bus: redis and auth, callers sending ~3.9 MB of task each, refused or not, with a
//     plugin that puts the caller's data into an event: the Redis stream stays within about
//     (maxLen + 100) × maxEventBytes, and an admin's subscription is not ended by the big events.
// (c) With auth and allowAnonymous: an anonymous subscriber sees no named user's events.
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { EventService, EventType, SubscribeRequestSchema, type SubscribeResponse } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { REDIS_URL } from "../sessions/redis-support.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { publicApi, writeFiles } from "../support/plugin-fixtures.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";
import { crashLines, expectServing, grpcFrame, rssMiB } from "./support.ts";

const SUBSCRIBE = "/qingyu.agent.v1.EventService/Subscribe";
/** src/transport/stalled-stream.ts STALLED_END_GRACE_MS: how long an ended stream waits for its client before the reset. */
const GRACE_MS = 3000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (k: string) => createHash("sha256").update(k).digest("hex");
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** How a stuck subscription ended, as its client saw it. */
interface Ending {
  /** RST_STREAM code (gRPC port), or the socket error (Connect port) when the server reset it. */
  reset?: number | string;
  /** Connect: the end-of-stream message's error code, when one arrived instead. */
  endStream?: string;
  ms: number;
}

interface Stuck {
  ended: Promise<Ending>;
  /** Whether the client has seen the end without reading (HTTP/2 frames are read even with the stream paused). */
  done: () => boolean;
  /** Starts reading again. */
  resume(): void;
  close(): void;
}

/** A gRPC Subscribe over raw node:http2 whose client never reads: the stream's window fills and stays full. */
function stuckGrpc(port: number): Stuck {
  const started = performance.now();
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined);
  const req = session.request({ ":method": "POST", ":path": SUBSCRIBE, "content-type": "application/grpc", te: "trailers" });
  req.on("error", () => undefined);
  req.end(grpcFrame(toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, {}))));
  req.pause();
  let done = false;
  const ended = new Promise<Ending>((r) =>
    req.on("close", () => {
      done = true;
      r({ reset: req.rstCode, ms: performance.now() - started });
    }),
  );
  return { ended, done: () => done, resume: () => void req.on("data", () => undefined), close: () => session.destroy() };
}

/**
 * A Connect Subscribe over HTTP/1.1 whose client stops reading its socket. A paused socket
 * does not notice a reset until it reads again: `resume` reads on, and `ended` says whether
 * the connection was reset or the stream ended with an end-of-stream message.
 */
function stuckConnect(port: number): Stuck {
  const started = performance.now();
  const body = Buffer.from("{}");
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  const req = http.request({
    host: "127.0.0.1",
    port,
    method: "POST",
    path: SUBSCRIBE,
    agent: false,
    headers: { "content-type": "application/connect+json", "connect-protocol-version": "1" },
  });
  let response: http.IncomingMessage | undefined;
  let resumed = false;
  const chunks: Buffer[] = [];
  const ended = new Promise<Ending>((resolve) => {
    const finish = (reset?: string) => {
      const all = Buffer.concat(chunks);
      let endStream: string | undefined;
      for (let at = 0, next = 0; at + 5 <= all.length; at = next) {
        next = at + 5 + all.readUInt32BE(at + 1);
        if (all[at] === 2 && next <= all.length) endStream = JSON.parse(all.subarray(at + 5, next).toString()).error?.code ?? "ok";
      }
      resolve({ reset: endStream ? undefined : (reset ?? "closed without an end-of-stream message"), endStream, ms: performance.now() - started });
    };
    req.on("error", (err) => finish(err.message));
    req.on("response", (res) => {
      response = res;
      if (!resumed) res.pause();
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("error", (err) => finish(err.message));
      res.on("end", () => finish());
      res.on("aborted", () => finish("aborted"));
    });
    req.on("close", () => finish("closed"));
  });
  req.end(Buffer.concat([head, body]));
  return {
    ended,
    done: () => false,
    resume: () => {
      resumed = true;
      response?.resume();
    },
    close: () => req.destroy(),
  };
}

/** Runs Executes, `concurrency` at a time, until `stop()` or `max` calls; returns how many ran. */
async function drive(
  client: TestClient,
  stop: () => boolean,
  max: number,
  metadata: Record<string, string> = {},
  task = (n: number) => `event ${n}`,
): Promise<number> {
  let calls = 0;
  const worker = async () => {
    while (!stop() && calls < max) {
      calls++;
      await client.unary(AgentService, AgentService.method.execute, { agentId: "echo", task: task(calls) }, { timeoutMs: 20_000, metadata });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return calls;
}

/** A grpc-js subscriber that reads: what it received, and its status once it ended. */
function reader(client: TestClient, metadata: Record<string, string> = {}, types = [EventType.AGENT_COMPLETED]) {
  const call = client.stream(EventService, EventService.method.subscribe, { types }, { metadata });
  const events: SubscribeResponse[] = [];
  let status: grpc.StatusObject | undefined;
  call.on("data", (m: SubscribeResponse) => events.push(m));
  call.on("status", (s: grpc.StatusObject) => (status = s));
  call.on("error", () => undefined);
  return { events, status: () => status, cancel: () => call.cancel() };
}

describe("a subscriber that stops reading is ended (events.subscriberMaxEvents 1000, subscriberMaxBytes 1 MiB)", () => {
  let server: ServerProcess;
  let client: TestClient;
  beforeAll(async () => {
    server = await startServer({ log: { level: "warn" }, agents: [{ id: "echo", provider: "echo", model: "echo-1" }], plugins: { dirs: [] } });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
  });

  // Executes to drive: four events each to a subscriber of every type (started, two middleware,
  // completed), ~200 bytes apiece. The gRPC subscriber's HTTP/2 window holds ~64 KiB; a stopped
  // HTTP/1.1 client's socket buffers (both kernels) took ~3.6 MB here, so the Connect case sends ~9 MB.
  const cases: [string, () => Stuck, number, (e: Ending) => void][] = [
    ["gRPC port (HTTP/2 flow control)", () => stuckGrpc(server.grpcPort), 20_000, (e) => expect(e.reset).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)],
    [
      "Connect port (HTTP/1.1 socket)",
      () => stuckConnect(server.httpPort),
      10_000,
      (e) => expect(e).toMatchObject({ reset: expect.any(String), endStream: undefined }),
    ],
  ];
  for (const [name, open, maxCalls, check] of cases) {
    it(`${name}: ended without the client reading, within a bounded time and memory; a reading subscriber unaffected`, async () => {
      const good = reader(client);
      const stuck = open();
      await sleep(300);
      const pid = server.child.pid!;
      const rssBefore = rssMiB(pid);
      let rssPeak = rssBefore;
      const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB(pid))), 100);
      const started = performance.now();
      let calls = 0;
      try {
        calls = await drive(client, stuck.done, maxCalls);
        // Past the grace, the server has reset the stream it gave up on; only then does the client read again.
        if (!stuck.done()) await sleep(GRACE_MS + 2000);
        const seconds = (performance.now() - started) / 1000;
        stuck.resume();
        const ending = await Promise.race([stuck.ended, sleep(10_000).then(() => undefined)]);
        console.log(
          `stuck subscriber, ${name}: ${calls} Executes (~${calls * 4} events) in ${seconds.toFixed(1)} s, ended ${JSON.stringify(ending)}; server RSS ${rssBefore.toFixed(0)} → peak ${rssPeak.toFixed(0)} MiB`,
        );
        expect(ending, "the stuck subscription was still open when its client read again").toBeDefined();
        check(ending!);
        expect(seconds).toBeLessThan(90);
        expect(rssPeak - rssBefore).toBeLessThan(150);
      } finally {
        clearInterval(sampler);
        stuck.close();
      }
      // The reader saw every Execute, and keeps receiving.
      await sleep(500);
      expect(good.events.length).toBe(calls);
      await drive(client, () => false, 10);
      await sleep(500);
      expect(good.events.length).toBe(calls + 10);
      expect(good.status()).toBeUndefined();
      good.cancel();
      await expectServing(server);
    });
  }
});

const KEYS = { alice: randomBytes(24).toString("hex"), root: randomBytes(24).toString("hex") };
const apiKeys = [
  { id: "alice", sha256: sha256(KEYS.alice) },
  { id: "root", sha256: sha256(KEYS.root), admin: true },
];

describe("events.bus redis: caller-sized data cannot fill the stream (maxLen 100, maxEventBytes 4096)", () => {
  const keyPrefix = `qingyu:test:subscribers:${randomUUID()}:`;
  const stream = `${keyPrefix}events`;
  let server: ServerProcess;
  let client: TestClient;
  let admin: Redis;
  beforeAll(async () => {
    admin = new Redis(REDIS_URL);
    // A plugin, ahead of auth, that puts the caller's task and metadata into an event: plugins publish
    // on the same bus, so the bus, not each publisher, bounds what an event can carry.
    const dir = tempDir("qingyu-subscribers-");
    writeFiles(dir, {
      "caller-echo.ts": `import { definePlugin } from ${JSON.stringify(publicApi)};
export default definePlugin({
  name: "caller-echo",
  kind: "middleware",
  setup(host) {
    return {
      name: "caller-echo",
      process(ctx, next) {
        host.events.publish({ type: "AGENT_STARTED", agentId: ctx.agentId, data: { plugin: "caller-echo", task: ctx.task, metadata: ctx.metadata } });
        return next();
      },
    };
  },
});
`,
    });
    server = await startServer({
      log: { level: "warn" },
      redis: { url: REDIS_URL },
      events: { bus: "redis", keyPrefix, maxLen: 100 },
      pipeline: ["caller-echo", { plugin: "auth", options: { apiKeys } }],
      agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
      plugins: { dirs: [dir] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    if (server) expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
    const keys = await admin.keys(`${keyPrefix}*`);
    if (keys.length) await admin.del(...keys);
    await admin.quit();
  });

  it("40 calls with a 3.9 MB task (20 refused, 20 accepted) grow the stream by less than (maxLen + 100) × maxEventBytes", async () => {
    const watcher = reader(client, bearer(KEYS.root), [EventType.AGENT_STARTED]);
    // Another replica listens to AGENT_STARTED (as its Subscribe streams announce it), so this server appends them.
    await admin.hset(`${stream}:interest`, "another-replica", `${Date.now() + 600_000} AGENT_STARTED`);
    await admin.xadd(stream, "*", "o", "another-replica", "c", "interest");
    await sleep(300);
    const big = "t".repeat(3_900_000);
    const metadata = { note: "m".repeat(20_000) };
    // SAMPLES 0: every entry counted, not an estimate from a few.
    const usage = async () => Number((await admin.call("MEMORY", "USAGE", stream, "SAMPLES", "0")) ?? 0);
    const before = await usage();
    const refused = await Promise.all(
      Array.from({ length: 20 }, () =>
        statusOf(
          client.unary(AgentService, AgentService.method.execute, { agentId: "echo", task: big, metadata }, { metadata: bearer("wrong"), timeoutMs: 20_000 }),
        ),
      ),
    );
    expect(new Set(refused.map((s) => grpc.status[s.code]))).toEqual(new Set(["UNAUTHENTICATED"]));
    const accepted = await drive(
      client,
      () => false,
      20,
      bearer(KEYS.alice),
      () => big,
    );
    expect(accepted).toBe(20);
    await sleep(500);
    const after = await usage();
    const length = await admin.xlen(stream);
    console.log(`redis stream after 40 calls with a 3.9 MB task: ${length} entries, MEMORY USAGE ${before} → ${after} bytes`);
    // The events did go to the stream: what is bounded is what they hold.
    expect(length).toBeGreaterThanOrEqual(20);
    expect(after - before).toBeLessThan((100 + 100) * 4096);
    // The admin's subscription took the cut events and is still open.
    const cut = watcher.events.filter((e) => e.event?.data?.plugin === "caller-echo");
    expect(cut.length).toBeGreaterThanOrEqual(20);
    for (const e of cut) {
      expect(e.event!.data!.truncated).toBe(true);
      expect(String(e.event!.data!.task)).toMatch(/^t+… \(cut from 3900000 characters\)$/);
    }
    expect(watcher.status()).toBeUndefined();
    watcher.cancel();
    await expectServing(server, "echo", `Bearer ${KEYS.alice}`);
  });
});

describe("auth with allowAnonymous: an anonymous subscriber sees no named user's events", () => {
  let server: ServerProcess;
  let client: TestClient;
  beforeAll(async () => {
    server = await startServer({
      log: { level: "warn" },
      pipeline: [{ plugin: "auth", options: { apiKeys, allowAnonymous: true } }],
      agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
  });

  it("alice's calls reach the admin's subscription, not the anonymous one; anonymous calls reach both", async () => {
    const anonymous = reader(client);
    const root = reader(client, bearer(KEYS.root));
    await sleep(300);
    await drive(client, () => false, 5, bearer(KEYS.alice));
    await drive(client, () => false, 3);
    await sleep(500);
    const users = (r: ReturnType<typeof reader>) => r.events.map((e) => e.event?.userId).sort();
    expect(users(root)).toEqual(["", "", "", "alice", "alice", "alice", "alice", "alice"]);
    expect(users(anonymous)).toEqual(["", "", ""]);
    expect(anonymous.status()).toBeUndefined();
    anonymous.cancel();
    root.cancel();
  });
});
