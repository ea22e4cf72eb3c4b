import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@qingyu/plugin-api";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { lists, objects } from "../support/nested-data.ts";
import { ConfigSchema } from "../../src/config/schema.ts";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import { ListCheckpointsResponseSchema, SaveCheckpointRequestSchema } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { DEFAULT_MAX_CHECKPOINT_DEPTH, MAX_CHECKPOINT_DEPTH } from "../../src/sessions/checkpoint-depth.ts";
import { SessionManager, type SessionPolicy } from "../../src/sessions/manager.ts";
import { MemorySessionStore } from "../../src/sessions/memory-store.ts";
import { rejection } from "../support/rejection.ts";

const policy: SessionPolicy = {
  historyTokens: 0,
  getMessagesLimit: 200,
  maxCheckpointBytes: 1 << 20,
  checkpointsKept: 100,
  ttlSeconds: 3600,
  maxTtlSeconds: 7200,
  historyMessages: 3,
  defaultPageSize: 10,
  maxPageSize: 10,
};

const stores: MemorySessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

async function session(extra: Partial<SessionPolicy> = {}) {
  const store = new MemorySessionStore(60_000);
  stores.push(store);
  const manager = new SessionManager(store, new MemoryEventBus(pino({ level: "silent" })), { ...policy, ...extra });
  const s = await manager.create("alice", "helper", {}, 0);
  return { manager, id: s.id };
}

describe("checkpoint data depth", () => {
  it("accepts data exactly at the default limit and refuses one level deeper, naming data and the limit, storing nothing", async () => {
    const { manager, id } = await session();
    for (const shape of [objects, lists]) {
      const saved = await manager.saveCheckpoint(id, "alice", shape(DEFAULT_MAX_CHECKPOINT_DEPTH), undefined);
      expect(saved.data).toEqual(shape(DEFAULT_MAX_CHECKPOINT_DEPTH));
      const err = await rejection(manager.saveCheckpoint(id, "alice", shape(DEFAULT_MAX_CHECKPOINT_DEPTH + 1), undefined));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/^data: .*limit of 33 levels/);
    }
    expect((await manager.listCheckpoints(id, "alice", 10, "")).items).toHaveLength(2);
  });

  it("counts a list inside an object inside a list, and looks past shallow siblings", async () => {
    const { manager, id } = await session({ maxCheckpointDepth: 3 });
    await manager.saveCheckpoint(id, "alice", { a: [{ b: 1 }], c: { d: [] }, e: "x".repeat(10) }, undefined);
    const err = await rejection(manager.saveCheckpoint(id, "alice", { a: 1, b: { c: 2 }, d: [{ e: [3] }] }, undefined));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^data: .*limit of 3 levels/);
    expect((await manager.listCheckpoints(id, "alice", 10, "")).items).toHaveLength(1);
  });

  it("is sessions.maxCheckpointDepth, between 1 and what protobuf-es reads", () => {
    expect(ConfigSchema.parse({}).sessions.maxCheckpointDepth).toBe(DEFAULT_MAX_CHECKPOINT_DEPTH);
    expect(ConfigSchema.parse({ sessions: { maxCheckpointDepth: MAX_CHECKPOINT_DEPTH } }).sessions.maxCheckpointDepth).toBe(MAX_CHECKPOINT_DEPTH);
    expect(ConfigSchema.safeParse({ sessions: { maxCheckpointDepth: MAX_CHECKPOINT_DEPTH + 1 } }).success).toBe(false);
    expect(ConfigSchema.safeParse({ sessions: { maxCheckpointDepth: 0 } }).success).toBe(false);
  });

  // Pins MAX_CHECKPOINT_DEPTH to the protobuf-es in use: an upgrade that moves its recursion limit fails here.
  it("allows at most the depth protobuf-es decodes in a listing and in a save request", () => {
    for (const shape of [objects, lists]) {
      const listing = (depth: number) =>
        toBinary(ListCheckpointsResponseSchema, create(ListCheckpointsResponseSchema, { checkpoints: [{ data: shape(depth) }] }));
      expect(fromBinary(ListCheckpointsResponseSchema, listing(MAX_CHECKPOINT_DEPTH)).checkpoints[0]!.data).toEqual(shape(MAX_CHECKPOINT_DEPTH));
      expect(() => fromBinary(ListCheckpointsResponseSchema, listing(MAX_CHECKPOINT_DEPTH + 1))).toThrow(/recursion/);
      const request = toBinary(SaveCheckpointRequestSchema, create(SaveCheckpointRequestSchema, { data: shape(MAX_CHECKPOINT_DEPTH) }));
      expect(fromBinary(SaveCheckpointRequestSchema, request).data).toEqual(shape(MAX_CHECKPOINT_DEPTH));
    }
  });
});
