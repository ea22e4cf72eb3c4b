import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.ts";
import {
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";

const config = {
  log: { level: "warn" },
  agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
  plugins: { dirs: [] },
};

async function connect(port: number, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${port}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

// A reflection call as grpcurl makes it: one request on the bidi stream, one answer.
function reflect(
  client: TestClient,
  version: "v1" | "v1alpha",
  request: MessageInitShape<typeof ServerReflectionRequestSchema>,
): Promise<ServerReflectionResponse> {
  return new Promise((resolve, reject) => {
    const call = client.raw.makeBidiStreamRequest(
      `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      (m: ServerReflectionRequest) => Buffer.from(toBinary(ServerReflectionRequestSchema, m)),
      (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b),
    );
    call.on("data", (res: ServerReflectionResponse) => {
      resolve(res);
      call.end();
    });
    call.on("error", reject);
    call.write(create(ServerReflectionRequestSchema, request));
  });
}

describe("Connect JSON, health and reflection", () => {
  let server: ServerProcess;
  let client: TestClient;
  beforeAll(async () => {
    server = await startServer(config);
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it("serves Execute as Connect JSON over plain HTTP", async () => {
    const res = await connect(server.httpPort, "qingyu.agent.v1.AgentService/Execute", { agentId: "echo", task: "from curl" });
    expect(res.status).toBe(200);
    expect(res.body.result.output).toBe("[history=0] from curl");
    expect(res.body.result.usage).toEqual({ inputTokens: 2, outputTokens: 3 });
  });

  it("maps errors to Connect codes with the same messages", async () => {
    const missing = await connect(server.httpPort, "qingyu.agent.v1.AgentService/Execute", { agentId: "ghost", task: "x" });
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ code: "not_found" });
    expect(missing.body.message).toContain("ghost");
    const bad = await connect(server.httpPort, "qingyu.agent.v1.AgentService/Execute", { agentId: "echo", task: "" });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe("invalid_argument");
  });

  it("runs sessions over Connect too, sharing state with the gRPC port", async () => {
    const created = await connect(server.httpPort, "qingyu.agent.v1.SessionService/CreateSession", { userId: "web", agentId: "echo" });
    const sid = created.body.session.sessionId;
    await connect(server.httpPort, "qingyu.agent.v1.AgentService/Execute", { sessionId: sid, task: "hi" });
    const got = await connect(server.httpPort, "qingyu.agent.v1.SessionService/GetSession", { sessionId: sid });
    expect(got.body.session.messages).toHaveLength(2);
    expect(got.body.session.version).toBe("1");
  });

  it.each([
    ["Connect", createConnectTransport],
    ["gRPC-Web", createGrpcWebTransport],
  ] as const)("streams ExecuteStream over %s on the HTTP port", async (_name, makeTransport) => {
    const agents = createClient(AgentService, makeTransport({ baseUrl: `http://127.0.0.1:${server.httpPort}`, httpVersion: "1.1" }));
    const kinds: string[] = [];
    let text = "";
    for await (const res of agents.executeStream({ agentId: "echo", task: "over http" })) {
      kinds.push(res.event.case ?? "");
      if (res.event.case === "delta") text += res.event.value.text;
    }
    expect(kinds).toEqual(["started", "delta", "delta", "delta", "completed"]);
    expect(text).toBe("[history=0] over http");
    const err = await agents.execute({ agentId: "ghost", task: "x" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
  });

  it("does not let __proto__ keys in JSON fill in fields", async () => {
    const res = await connect(server.httpPort, "qingyu.agent.v1.AgentService/Execute", JSON.parse('{"agentId":"echo","__proto__":{"task":"smuggled"}}'));
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("invalid_argument");
    const ok = await connect(server.httpPort, "qingyu.agent.v1.AgentService/Execute", JSON.parse('{"agentId":"echo","task":"t","metadata":{"__proto__":"x"}}'));
    expect(ok.status).toBe(200);
    expect(ok.body.result.output).toBe("[history=0] t");
  });

  it("answers health checks on both ports", async () => {
    const http = await connect(server.httpPort, "grpc.health.v1.Health/Check", {});
    expect(http.body).toEqual({ status: "SERVING" });
    const res = await client.unary(Health, Health.method.check, { service: "qingyu.agent.v1.AgentService" });
    expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await statusOf(client.unary(Health, Health.method.check, { service: "no.Such" }))).code).toBe(grpc.status.NOT_FOUND);
  });

  it.each(["v1", "v1alpha"] as const)("serves server reflection %s, so grpcurl needs no protos", async (version) => {
    const listed = await reflect(client, version, { messageRequest: { case: "listServices", value: "" } });
    const services = listed.messageResponse.case === "listServicesResponse" ? listed.messageResponse.value.service.map((s) => s.name) : [];
    expect(services).toEqual(
      expect.arrayContaining(["qingyu.agent.v1.AgentService", "qingyu.agent.v1.SessionService", "qingyu.agent.v1.EventService", "grpc.health.v1.Health"]),
    );

    const res = await reflect(client, version, { messageRequest: { case: "fileContainingSymbol", value: "qingyu.agent.v1.SessionService.SaveCheckpoint" } });
    expect(res.messageResponse.case).toBe("fileDescriptorResponse");
    const files =
      res.messageResponse.case === "fileDescriptorResponse"
        ? res.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b))
        : [];
    // The file and everything it imports, so a client can resolve google.protobuf.Struct and the ToolCall of a message.
    expect(files.map((f) => f.name)).toEqual([
      "google/protobuf/struct.proto",
      "google/protobuf/timestamp.proto",
      "qingyu/agent/v1/tool.proto",
      "qingyu/agent/v1/session.proto",
    ]);
    expect(files.at(-1)!.service[0]!.method.map((m) => m.name)).toContain("SaveCheckpoint");

    const missing = await reflect(client, version, { messageRequest: { case: "fileContainingSymbol", value: "no.such.Thing" } });
    expect(missing.messageResponse.case === "errorResponse" && missing.messageResponse.value.errorCode).toBe(grpc.status.NOT_FOUND);
  });
});
