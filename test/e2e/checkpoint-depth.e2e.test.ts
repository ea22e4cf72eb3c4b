import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { JsonObject } from "@qingyu/plugin-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lists, objects } from "../support/nested-data.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { statusOf, TestClient } from "../support/grpc-client.ts";
import { runPython } from "../support/python.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";

const root = resolve(import.meta.dirname, "../..");
const LIMIT = 33; // sessions.maxCheckpointDepth's default
const USER = "depth-user";

// Reads one session's checkpoints as a Python backend would and prints them as JSON.
const READER = `
import json, sys
import grpc
from google.protobuf import json_format
from qingyu.agent.v1 import session_pb2 as s

def call(channel, name, req, res):
    return channel.unary_unary("/qingyu.agent.v1.SessionService/" + name, request_serializer=req.SerializeToString, response_deserializer=res.FromString)

target, user, session_id, checkpoint_id = sys.argv[1:5]
with grpc.insecure_channel(target) as channel:
    got = call(channel, "GetCheckpoint", s.GetCheckpointRequest, s.GetCheckpointResponse)(s.GetCheckpointRequest(session_id=session_id, checkpoint_id=checkpoint_id, user_id=user), timeout=10)
    listed = call(channel, "ListCheckpoints", s.ListCheckpointsRequest, s.ListCheckpointsResponse)(s.ListCheckpointsRequest(session_id=session_id, user_id=user), timeout=10)
    print(json.dumps({"get": json_format.MessageToDict(got.checkpoint.data), "list": [json_format.MessageToDict(c.data) for c in listed.checkpoints]}))
`;

describe("checkpoint data nested to sessions.maxCheckpointDepth", () => {
  let server: ServerProcess;
  let grpcClient: TestClient;
  let connectJson: Client<typeof SessionService>;
  let connectBinary: Client<typeof SessionService>;
  let pythonPath = "";

  beforeAll(async () => {
    server = await startServer({ log: { level: "warn" }, agents: [{ id: "echo", provider: "echo", model: "echo-1" }], plugins: { dirs: [] } });
    grpcClient = new TestClient(server.grpcPort);
    const baseUrl = `http://127.0.0.1:${server.httpPort}`;
    // connect-node's transport sends binary unless told otherwise.
    connectJson = createClient(SessionService, createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }));
    connectBinary = createClient(SessionService, createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true }));
    // Python grpcio too: the run's globalSetup has checked for it and protoc.
    pythonPath = tempDir("qingyu-py-depth-");
    execFileSync("protoc", ["-I", join(root, "proto"), `--python_out=${pythonPath}`, "qingyu/agent/v1/session.proto", "qingyu/agent/v1/tool.proto"]);
    writeFileSync(join(pythonPath, "read_checkpoints.py"), READER);
  });
  afterAll(async () => {
    grpcClient?.close();
    await server?.stop();
  });

  const newSession = async () => (await connectJson.createSession({ userId: USER, agentId: "echo" })).session!.sessionId;

  /** Saves through one port: "grpc" (grpc-js, binary) or "connect" (Connect JSON). */
  const save = async (port: "grpc" | "connect", sessionId: string, data: JsonObject) => {
    const res =
      port === "grpc"
        ? await grpcClient.unary(SessionService, SessionService.method.saveCheckpoint, { sessionId, userId: USER, data })
        : await connectJson.saveCheckpoint({ sessionId, userId: USER, data });
    return res.checkpoint!;
  };

  /** What every client reads back of the session: GetCheckpoint of `checkpointId` and every listed checkpoint's data. */
  const readEverywhere = async (sessionId: string, checkpointId: string) => {
    const reads: Record<string, { get?: JsonObject; list: JsonObject[] }> = {};
    const get = { sessionId, checkpointId, userId: USER };
    const list = { sessionId, userId: USER };
    reads.grpc = {
      get: checkpointId ? (await grpcClient.unary(SessionService, SessionService.method.getCheckpoint, get)).checkpoint!.data : undefined,
      list: (await grpcClient.unary(SessionService, SessionService.method.listCheckpoints, list)).checkpoints.map((c) => c.data!),
    };
    for (const [name, client] of [
      ["connect-json", connectJson],
      ["connect-binary", connectBinary],
    ] as const) {
      reads[name] = {
        get: checkpointId ? (await client.getCheckpoint(get)).checkpoint!.data : undefined,
        list: (await client.listCheckpoints(list)).checkpoints.map((c) => c.data!),
      };
    }
    if (checkpointId) {
      const out = await runPython([join(pythonPath, "read_checkpoints.py"), `127.0.0.1:${server.grpcPort}`, USER, sessionId, checkpointId], pythonPath);
      reads.python = JSON.parse(out);
    }
    return reads;
  };

  for (const port of ["grpc", "connect"] as const) {
    for (const shape of [objects, lists]) {
      it(`round-trips ${shape.name} ${LIMIT} deep, saved over ${port}, through grpc-js, Connect and Python`, async () => {
        const sessionId = await newSession();
        const saved = await save(port, sessionId, shape(LIMIT));
        expect(saved.data).toEqual(shape(LIMIT));
        const reads = await readEverywhere(sessionId, saved.checkpointId);
        expect(Object.keys(reads)).toEqual(["grpc", "connect-json", "connect-binary", "python"]);
        for (const read of Object.values(reads)) expect(read).toEqual({ get: shape(LIMIT), list: [shape(LIMIT)] });
      });

      it(`refuses ${shape.name} ${LIMIT + 1} deep over ${port} with INVALID_ARGUMENT naming data and the limit, storing nothing`, async () => {
        const sessionId = await newSession();
        const kept = await save(port, sessionId, { kept: true });
        const refused = port === "grpc" ? await statusOf(save(port, sessionId, shape(LIMIT + 1))) : await connectError(save(port, sessionId, shape(LIMIT + 1)));
        expect(refused.code).toBe(Code.InvalidArgument);
        expect(refused.details).toMatch(new RegExp(`^data: .*limit of ${LIMIT} levels`));
        // The session still lists, on every client, with only what was accepted.
        const reads = await readEverywhere(sessionId, kept.checkpointId);
        for (const read of Object.values(reads)) expect(read).toEqual({ get: { kept: true }, list: [{ kept: true }] });
      });
    }
  }

  // Past the decoders' own limits (protobuf-es binary: 49 levels; JSON: 98) the refusal comes from the decoder, still INVALID_ARGUMENT.
  it("refuses data far deeper than the limit on both ports and in both Connect encodings, storing nothing", async () => {
    const sessionId = await newSession();
    for (const depth of [49, 50, 60, 98, 99, 120]) {
      const data = objects(depth);
      expect((await statusOf(save("grpc", sessionId, data))).code, `gRPC, ${depth} deep`).toBe(Code.InvalidArgument);
      const json = await connectError(connectJson.saveCheckpoint({ sessionId, userId: USER, data }));
      expect(json.code, `Connect JSON, ${depth} deep`).toBe(Code.InvalidArgument);
      // The JSON decoder reads 98 levels (the depths the issue saw stored): up to there the refusal is ours, naming data.
      if (depth <= 98) expect(json.details).toMatch(/^data: /);
      expect((await connectError(connectBinary.saveCheckpoint({ sessionId, userId: USER, data }))).code, `Connect binary, ${depth} deep`).toBe(
        Code.InvalidArgument,
      );
    }
    const reads = await readEverywhere(sessionId, "");
    for (const read of Object.values(reads)) expect(read.list).toEqual([]);
  });
});

async function connectError(p: Promise<unknown>): Promise<{ code: Code; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, details: e.rawMessage };
  }
  throw new Error("expected the call to fail, but it succeeded");
}
