import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { EventService, EventType } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { redisUrl } from "../support/services.ts";

const prefix = `qingyu:test:events:${randomUUID()}:`;
const config = {
  log: { level: "warn" },
  plugins: { dirs: [] },
  redis: { url: redisUrl() },
  events: { bus: "redis", keyPrefix: prefix },
};

describe("events across server processes sharing Redis", () => {
  let a: ServerProcess;
  let b: ServerProcess;
  beforeAll(async () => {
    [a, b] = await Promise.all([startServer(config), startServer(config)]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    const redis = new Redis(redisUrl());
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it("a subscriber on process B sees the calls made on process A, in order", async () => {
    const onA = new TestClient(a.grpcPort);
    const onB = new TestClient(b.grpcPort);
    const seen: { type: number; userId: string }[] = [];
    const sub = onB.stream(EventService, EventService.method.subscribe, { types: [EventType.AGENT_STARTED, EventType.AGENT_COMPLETED], agentId: "echo" });
    sub.on("data", (m) => seen.push({ type: m.event!.type, userId: m.event!.userId }));
    sub.on("error", () => undefined);
    try {
      // The subscription registers asynchronously: call on B until B's own events show up.
      for (let i = 0; i < 100 && seen.length === 0; i++) {
        await onB.unary(AgentService, AgentService.method.execute, { agentId: "echo", userId: "sync", task: "sync" });
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen.length).toBeGreaterThan(0);
      seen.length = 0;
      const users = Array.from({ length: 10 }, (_, i) => `user-${i}`);
      for (const userId of users) await onA.unary(AgentService, AgentService.method.execute, { agentId: "echo", userId, task: `task for ${userId}` });
      for (let i = 0; i < 200 && seen.filter((e) => e.type === EventType.AGENT_COMPLETED).length < users.length; i++)
        await new Promise((r) => setTimeout(r, 20));
      const fromA = seen.filter((e) => users.includes(e.userId));
      // Started then completed for each call, calls in the order A made them.
      expect(fromA.map((e) => `${e.userId}:${e.type === EventType.AGENT_STARTED ? "started" : "completed"}`)).toEqual(
        users.flatMap((u) => [`${u}:started`, `${u}:completed`]),
      );
    } finally {
      sub.cancel();
      onA.close();
      onB.close();
    }
  });
});
