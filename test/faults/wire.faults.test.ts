// Malformed requests on both ports, sent below any client library (gRPC framed by hand
// over node:http2, Connect bodies as raw bytes), and JSON keys aimed at Object.prototype.
// Each case: the status a client sees, then the process still answers a normal call.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecuteRequestSchema, ExecuteResponseSchema } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { projectDir, publicApi, removeProjectDirs, writeFiles } from "../support/plugin-fixtures.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { connectCall, crashLines, expectServing, grpcFrame, rawGrpc } from "./support.ts";

const S = SessionService.method;
const EXECUTE = "/qingyu.agent.v1.AgentService/Execute";
const STREAM = "/qingyu.agent.v1.AgentService/ExecuteStream";
const valid = Buffer.from(toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "echo", task: "hi" })));
const notProtobuf = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
// agent_id "echo", then task = the bytes ff fe: not UTF-8.
const badUtf8 = Buffer.from([0x0a, 0x04, 0x65, 0x63, 0x68, 0x6f, 0x12, 0x02, 0xff, 0xfe]);

// A middleware that reports, in every result's metadata, the properties Object.prototype
// has gained since the server started: pollution by any earlier call shows up here.
const probe = `import { definePlugin, type RunEvent } from ${JSON.stringify(publicApi)};
const baseline = new Set(Object.getOwnPropertyNames(Object.prototype));
export default definePlugin({
  name: "prototype-probe",
  kind: "middleware",
  setup() {
    return {
      name: "prototype-probe",
      async *process(ctx, next): AsyncIterable<RunEvent> {
        for await (const e of next()) {
          if (e.type !== "completed") { yield e; continue; }
          const gained = Object.getOwnPropertyNames(Object.prototype).filter((k) => !baseline.has(k));
          for (const k in {}) gained.push("enumerable:" + k);
          yield { ...e, result: { ...e.result, metadata: { ...e.result.metadata, prototype_gained: gained.join(",") } } };
        }
      },
    };
  },
});
`;

describe("malformed requests and prototype keys", () => {
  let server: ServerProcess;

  beforeAll(async () => {
    const dir = projectDir();
    writeFiles(dir, { "plugins/probe.ts": probe });
    server = await startServer({
      log: { level: "warn" },
      pipeline: ["logging", "validation", "prototype-probe"],
      agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
      plugins: { dirs: [`${dir}/plugins`] },
    });
  });
  afterAll(async () => {
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
    removeProjectDirs();
  });

  // agent.e2e sends the first three through a grpc-js client; here the frames are hand-made,
  // so grpc-js's own framing checks are exercised too.
  it.each([
    ["bytes that are not protobuf to Execute", EXECUTE, grpcFrame(notProtobuf), {}, grpc.status.INVALID_ARGUMENT, "not a valid qingyu.agent.v1.ExecuteRequest"],
    ["bytes that are not protobuf to ExecuteStream", STREAM, grpcFrame(notProtobuf), {}, grpc.status.INVALID_ARGUMENT, "ExecuteStreamRequest"],
    ["a string field that is not UTF-8", EXECUTE, grpcFrame(badUtf8), {}, grpc.status.INVALID_ARGUMENT, "not a valid qingyu.agent.v1.ExecuteRequest"],
    ["an unknown method", "/qingyu.agent.v1.AgentService/Nope", grpcFrame(valid), {}, grpc.status.UNIMPLEMENTED, "does not implement"],
    ["an unknown service", "/no.such.Service/Execute", grpcFrame(valid), {}, grpc.status.UNIMPLEMENTED, "does not implement"],
    ["a frame shorter than its length prefix", EXECUTE, grpcFrame(valid, 0, valid.length + 10), {}, grpc.status.UNIMPLEMENTED, "no request message"],
    ["no message at all", EXECUTE, Buffer.alloc(0), {}, grpc.status.UNIMPLEMENTED, "no request message"],
    ["two messages to a unary method", EXECUTE, Buffer.concat([grpcFrame(valid), grpcFrame(valid)]), {}, grpc.status.UNIMPLEMENTED, "second request message"],
    ["gzip-flagged bytes that are not gzip", EXECUTE, grpcFrame(Buffer.from("not gzip"), 1), { "grpc-encoding": "gzip" }, grpc.status.INTERNAL, "decompress"],
    ["an encoding the server does not know", EXECUTE, grpcFrame(valid, 1), { "grpc-encoding": "br" }, grpc.status.UNIMPLEMENTED, "unsupported encoding"],
    [
      "a gzip bomb (64 MiB of zeros)",
      EXECUTE,
      grpcFrame(gzipSync(Buffer.alloc(64 * 1024 * 1024)), 1),
      { "grpc-encoding": "gzip" },
      grpc.status.RESOURCE_EXHAUSTED,
      "larger than 4194304",
    ],
    ["a grpc-timeout that is not one", EXECUTE, grpcFrame(valid), { "grpc-timeout": "soon" }, grpc.status.INTERNAL, "grpc-timeout"],
  ])("gRPC port, %s: the named status, never UNKNOWN", async (_name, path, body, headers, code, mention) => {
    const reply = await rawGrpc(server.grpcPort, path, body, headers);
    expect(reply.error).toBeUndefined();
    expect(grpc.status[reply.grpcStatus!], reply.grpcMessage).toBe(grpc.status[code]);
    expect(reply.grpcMessage?.toLowerCase()).toContain(mention.toLowerCase());
    await expectServing(server);
  });

  it("gRPC port: a compression flag without grpc-encoding is read as uncompressed (grpc-js), and a wrong content-type is HTTP 415", async () => {
    // The gRPC spec asks for INTERNAL here; grpc-js 1.14 is lenient. Either way: an answer, not a crash.
    const flagged = await rawGrpc(server.grpcPort, EXECUTE, grpcFrame(valid, 1));
    expect(flagged.grpcStatus).toBe(grpc.status.OK);
    const plain = await rawGrpc(server.grpcPort, EXECUTE, grpcFrame(valid), { "content-type": "text/plain" });
    expect(plain.httpStatus, JSON.stringify(plain)).toBe(415);
    await expectServing(server);
  });

  it("HTTP port (Connect): wrong content-type, broken JSON, wrong field types, non-protobuf binary, unknown route and GET", async () => {
    const path = "qingyu.agent.v1.AgentService/Execute";
    const text = await connectCall(server.httpPort, path, "{}", { "content-type": "text/plain" });
    expect(text.status).toBe(415);
    const broken = await connectCall(server.httpPort, path, '{"agentId": "echo", "task":');
    expect([broken.status, broken.json?.code]).toEqual([400, "invalid_argument"]);
    const typed = await connectCall(server.httpPort, path, '{"agentId": "echo", "task": 5}');
    expect([typed.status, typed.json?.code]).toEqual([400, "invalid_argument"]);
    expect(typed.json.message).toContain("ExecuteRequest.task");
    // A binary body that is not the method's message: INVALID_ARGUMENT in every protocol of the
    // HTTP port, in the gRPC port's words (connect-es itself would say INTERNAL).
    const streamPath = "qingyu.agent.v1.AgentService/ExecuteStream";
    for (const bytes of [notProtobuf, badUtf8]) {
      const binary = await connectCall(server.httpPort, path, bytes, { "content-type": "application/proto" });
      expect([binary.status, binary.json?.code]).toEqual([400, "invalid_argument"]);
      expect(binary.json.message).toContain("request: is not a valid qingyu.agent.v1.ExecuteRequest message");
      // Connect streaming: the error is the end-of-stream message (flag 2) of an HTTP 200.
      const stream = await fetch(`http://127.0.0.1:${server.httpPort}/${streamPath}`, {
        method: "POST",
        headers: { "content-type": "application/connect+proto" },
        body: grpcFrame(bytes),
        signal: AbortSignal.timeout(10_000),
      });
      const frame = Buffer.from(await stream.arrayBuffer());
      expect(frame[0]).toBe(2);
      const end = JSON.parse(frame.subarray(5).toString("utf8"));
      expect(end.error.code).toBe("invalid_argument");
      expect(end.error.message).toContain("is not a valid qingyu.agent.v1.ExecuteStreamRequest message");
      // gRPC-Web: the status is in the trailer frame (flag 0x80).
      const web = await fetch(`http://127.0.0.1:${server.httpPort}/${path}`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto" },
        body: grpcFrame(bytes),
        signal: AbortSignal.timeout(10_000),
      });
      const trailer = Buffer.from(await web.arrayBuffer());
      expect(trailer[0]).toBe(0x80);
      const lines = trailer.subarray(5).toString("latin1");
      expect(lines).toMatch(/^grpc-status: 3\r$/m);
      expect(decodeURIComponent(/^grpc-message: (.*)\r$/m.exec(lines)![1]!)).toContain("is not a valid qingyu.agent.v1.ExecuteRequest message");
    }
    // A valid binary body still works through the wrapper.
    const ok = await fetch(`http://127.0.0.1:${server.httpPort}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "echo", task: "fine" })),
      signal: AbortSignal.timeout(10_000),
    });
    expect(ok.status).toBe(200);
    expect(fromBinary(ExecuteResponseSchema, new Uint8Array(await ok.arrayBuffer())).result?.output).toContain("fine");
    expect((await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Nope", "{}")).status).toBe(404);
    const get = await fetch(`http://127.0.0.1:${server.httpPort}/${path}`, { signal: AbortSignal.timeout(5000) });
    expect(get.status).toBe(405);
    await expectServing(server);
  });

  const POISON = '{"polluted":"yes"}';
  const gained = (res: { json?: any }) => res.json?.result?.metadata?.prototype_gained;

  it('"__proto__" and "constructor" keys in Connect JSON stay plain data: stored, returned as keys, Object.prototype untouched', async () => {
    const call = (method: string, body: string) => connectCall(server.httpPort, `qingyu.agent.v1.${method}`, body);
    const meta = '{"__proto__":"x","constructor":"y","toString":"z"}';
    const created = await call("SessionService/CreateSession", `{"userId":"u","agentId":"echo","metadata":${meta}}`);
    expect(created.status, created.text).toBe(200);
    const sid: string = created.json.session.sessionId;
    expect(created.text).toContain(`"metadata":${meta}`);
    // A map<string,string> value that is an object is refused, not merged into anything.
    const objectValue = await call("SessionService/CreateSession", `{"userId":"u","agentId":"echo","metadata":{"__proto__":${POISON}}}`);
    expect([objectValue.status, objectValue.json?.code]).toEqual([400, "invalid_argument"]);

    const data = `{"__proto__":${POISON},"constructor":{"prototype":${POISON}},"nested":{"__proto__":${POISON}},"list":[{"__proto__":${POISON}}]}`;
    const saved = await call("SessionService/SaveCheckpoint", `{"sessionId":"${sid}","userId":"u","data":${data}}`);
    expect(saved.status, saved.text).toBe(200);
    const got = await call("SessionService/GetCheckpoint", `{"sessionId":"${sid}","userId":"u"}`);
    expect(got.status).toBe(200);
    // Returned exactly as sent: "__proto__" is an own key of the data, not the data's prototype.
    expect(JSON.stringify(got.json.checkpoint.data)).toBe(data);
    expect(Object.hasOwn(got.json.checkpoint.data, "__proto__")).toBe(true);
    const listed = await call("SessionService/ListCheckpoints", `{"sessionId":"${sid}","userId":"u"}`);
    expect(JSON.stringify(listed.json.checkpoints[0].data)).toBe(data);

    const turn = await call("AgentService/Execute", `{"sessionId":"${sid}","userId":"u","task":"t","metadata":${meta}}`);
    expect(turn.status, turn.text).toBe(200);
    const batch = await call("AgentService/ExecuteBatch", `{"requests":[{"agentId":"echo","task":"b","metadata":${meta}}]}`);
    expect(batch.status, batch.text).toBe(200);

    // Fresh calls after all of that: nothing was injected anywhere.
    const fresh = await call("SessionService/CreateSession", '{"userId":"v","agentId":"echo"}');
    expect(fresh.json.session.metadata ?? {}).toEqual({});
    expect(fresh.text).not.toContain("polluted");
    const after = await call("AgentService/Execute", '{"agentId":"echo","task":"fresh"}');
    expect(after.status).toBe(200);
    expect(Object.keys(after.json.result.metadata)).toEqual(["prototype_gained"]);
    expect(gained(after)).toBe("");
    await expectServing(server);
  });

  it('"__proto__" keys in a checkpoint sent as gRPC protobuf round-trip as keys too', async () => {
    const client = new TestClient(server.grpcPort);
    try {
      const { session } = await client.unary(SessionService, S.createSession, { userId: "g", agentId: "echo", metadata: JSON.parse('{"__proto__":"x"}') });
      expect(Object.hasOwn(session!.metadata, "__proto__")).toBe(true);
      const data = JSON.parse(`{"__proto__":${POISON},"constructor":{"prototype":${POISON}}}`);
      await client.unary(SessionService, S.saveCheckpoint, { sessionId: session!.sessionId, userId: "g", data });
      const { checkpoint } = await client.unary(SessionService, S.getCheckpoint, { sessionId: session!.sessionId, userId: "g" });
      expect(Object.getOwnPropertyNames(checkpoint!.data)).toEqual(["__proto__", "constructor"]);
      expect(Object.getPrototypeOf(checkpoint!.data)).toBe(Object.prototype);
      expect(JSON.stringify(checkpoint!.data)).toBe(`{"__proto__":${POISON},"constructor":{"prototype":${POISON}}}`);
    } finally {
      client.close();
    }
    const after = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", '{"agentId":"echo","task":"fresh"}');
    expect(gained(after)).toBe("");
  });
});
