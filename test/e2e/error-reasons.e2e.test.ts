import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema, type ErrorInfo } from "../../src/gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.ts";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { runPython } from "../support/python.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";

// What each kind of client reads instead of the message: grpc-js decoding grpc-status-details-bin,
// connect-es's findDetails on the HTTP port, Python grpcio the qingyu-reason trailer.

const A = AgentService.method;
const S = SessionService.method;
const root = resolve(import.meta.dirname, "../..");

const key = (name: string) => `${name}-${randomBytes(12).toString("hex")}`;
const sha256 = (k: string) => createHash("sha256").update(k).digest("hex");
// One principal for everything but the rate limit; one per client to spend its one call a minute.
const KEYS = { alice: key("alice"), grpc: key("rl-grpc"), connect: key("rl-connect"), grpcWeb: key("rl-grpc-web"), python: key("rl-python") };

const config = {
  log: { level: "warn" },
  pipeline: [
    { plugin: "auth", options: { apiKeys: Object.entries(KEYS).map(([id, k]) => ({ id, sha256: sha256(k) })) } },
    { plugin: "rate-limit", options: { backend: "memory", perPrincipal: { requestsPerMinute: 1 } } },
    "validation",
  ],
  providers: { echo: { plugin: "echo" } },
  agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
  plugins: { dirs: [] },
};

/** A refused call as a client sees it: code, the reason trailer and the ErrorInfo from the status details. */
interface Seen {
  code: number;
  trailer: string | undefined;
  info: Pick<ErrorInfo, "reason" | "domain" | "metadata"> | undefined;
}

const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
const batchWithBadId = {
  requests: [
    { agentId: "echo", task: "a" },
    { agentId: "echo", task: "b", sessionId: "not-a-uuid" },
  ],
};

/** grpc-js on the gRPC port: the trailer, and google.rpc.Status decoded from grpc-status-details-bin. */
async function viaGrpcJs(call: Promise<unknown>): Promise<Seen> {
  try {
    await call;
  } catch (err) {
    const e = err as grpc.ServiceError;
    const bin = e.metadata.get("grpc-status-details-bin")[0];
    const status = bin === undefined ? undefined : fromBinary(StatusSchema, bin as Buffer);
    const packed = status?.details.find((d: Any) => d.typeUrl === "type.googleapis.com/google.rpc.ErrorInfo");
    const info = packed && anyUnpack(packed, ErrorInfoSchema);
    return {
      code: e.code,
      trailer: e.metadata.get("qingyu-reason")[0] as string | undefined,
      info: info && { reason: info.reason, domain: info.domain, metadata: info.metadata },
    };
  }
  throw new Error("expected the call to fail");
}

/** connect-es on the HTTP port: ConnectError.findDetails(ErrorInfoSchema), and the reason header/trailer. */
async function viaConnectEs(call: Promise<unknown>): Promise<Seen> {
  try {
    await call;
  } catch (err) {
    const e = ConnectError.from(err);
    const info = e.findDetails(ErrorInfoSchema)[0];
    return {
      code: e.code,
      trailer: e.metadata.get("qingyu-reason") ?? undefined,
      info: info && { reason: info.reason, domain: info.domain, metadata: info.metadata },
    };
  }
  throw new Error("expected the call to fail");
}

const seen = (code: number, reason: string, metadata: Record<string, string> = {}): Seen => ({
  code,
  trailer: reason,
  info: { reason, domain: "qingyu.dev", metadata },
});

describe(`error reasons reach every client (${runtime})`, () => {
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

  describe("grpc-js on the gRPC port", () => {
    const alice = { metadata: bearer(KEYS.alice) };

    it("SESSION_NOT_FOUND names the session", async () => {
      const id = randomUUID();
      expect(await viaGrpcJs(client.unary(SessionService, S.getSession, { sessionId: id }, alice))).toEqual(
        seen(grpc.status.NOT_FOUND, "SESSION_NOT_FOUND", { session_id: id }),
      );
    });

    it("STALE_VERSION gives the session's version and the one expected", async () => {
      const { session } = await client.unary(SessionService, S.createSession, { agentId: "echo" }, alice);
      const stale = client.unary(SessionService, S.saveCheckpoint, { sessionId: session!.sessionId, data: {}, expectedVersion: 7n }, alice);
      expect(await viaGrpcJs(stale)).toEqual(
        seen(grpc.status.ABORTED, "STALE_VERSION", { session_id: session!.sessionId, current_version: "0", expected_version: "7" }),
      );
    });

    it("INVALID_FIELD names the field, inside a batch too", async () => {
      expect(await viaGrpcJs(client.unary(AgentService, A.executeBatch, batchWithBadId, alice))).toEqual(
        seen(grpc.status.INVALID_ARGUMENT, "INVALID_FIELD", { field: "requests[1].session_id" }),
      );
    });

    it("RATE_LIMITED says when to retry", async () => {
      const limited = { metadata: bearer(KEYS.grpc) };
      await client.unary(AgentService, A.execute, { agentId: "echo", task: "one" }, limited);
      const refused = await viaGrpcJs(client.unary(AgentService, A.execute, { agentId: "echo", task: "two" }, limited));
      expect([refused.code, refused.trailer, refused.info?.reason, refused.info?.metadata.limit]).toEqual([
        grpc.status.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
        "RATE_LIMITED",
        "perPrincipal.requestsPerMinute",
      ]);
      expect(Number(refused.info?.metadata.retry_after_ms)).toBeGreaterThan(0);
    });

    it("UNAUTHENTICATED without credentials, TOKEN_INVALID with a key nobody has", async () => {
      expect(await viaGrpcJs(client.unary(SessionService, S.getSession, { sessionId: randomUUID() }))).toEqual(
        seen(grpc.status.UNAUTHENTICATED, "UNAUTHENTICATED"),
      );
      expect(await viaGrpcJs(client.unary(SessionService, S.getSession, { sessionId: randomUUID() }, { metadata: bearer("nope") }))).toEqual(
        seen(grpc.status.UNAUTHENTICATED, "TOKEN_INVALID"),
      );
    });

    it("a failed batch item carries its reason too", async () => {
      const id = randomUUID();
      const { items } = await client.unary(
        AgentService,
        A.executeBatch,
        { requests: [{ agentId: "echo", task: "a", sessionId: id }] },
        { metadata: bearer(KEYS.alice) },
      );
      const error = items[0]!.outcome.case === "error" ? items[0]!.outcome.value : undefined;
      expect([error?.code, error?.reason, error?.metadata]).toEqual([grpc.status.NOT_FOUND, "SESSION_NOT_FOUND", { session_id: id }]);
    });
  });

  for (const [protocol, transport, limitedKey] of [
    ["Connect", (port: number) => createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }), KEYS.connect],
    ["gRPC-Web", (port: number) => createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }), KEYS.grpcWeb],
  ] as const) {
    describe(`connect-es over ${protocol} on the HTTP port`, () => {
      let sessions: ReturnType<typeof createClient<typeof SessionService>>;
      let agents: ReturnType<typeof createClient<typeof AgentService>>;
      const alice = { headers: bearer(KEYS.alice) };
      beforeAll(() => {
        const t: Transport = transport(server.httpPort);
        sessions = createClient(SessionService, t);
        agents = createClient(AgentService, t);
      });

      it("SESSION_NOT_FOUND and STALE_VERSION", async () => {
        const id = randomUUID();
        expect(await viaConnectEs(sessions.getSession({ sessionId: id }, alice))).toEqual(seen(Code.NotFound, "SESSION_NOT_FOUND", { session_id: id }));
        const { session } = await sessions.createSession({ agentId: "echo" }, alice);
        const stale = sessions.saveCheckpoint({ sessionId: session!.sessionId, data: {}, expectedVersion: 3n }, alice);
        expect(await viaConnectEs(stale)).toEqual(
          seen(Code.Aborted, "STALE_VERSION", { session_id: session!.sessionId, current_version: "0", expected_version: "3" }),
        );
      });

      it("INVALID_FIELD with the field", async () => {
        expect(await viaConnectEs(agents.executeBatch(batchWithBadId, alice))).toEqual(
          seen(Code.InvalidArgument, "INVALID_FIELD", { field: "requests[1].session_id" }),
        );
      });

      it("RATE_LIMITED with retry_after_ms", async () => {
        const limited = { headers: bearer(limitedKey) };
        await agents.execute({ agentId: "echo", task: "one" }, limited);
        const refused = await viaConnectEs(agents.execute({ agentId: "echo", task: "two" }, limited));
        expect([refused.code, refused.trailer, refused.info?.reason]).toEqual([Code.ResourceExhausted, "RATE_LIMITED", "RATE_LIMITED"]);
        expect(Number(refused.info?.metadata.retry_after_ms)).toBeGreaterThan(0);
      });

      it("UNAUTHENTICATED, refused on its headers before the body is read", async () => {
        expect(await viaConnectEs(sessions.getSession({ sessionId: randomUUID() }))).toEqual(seen(Code.Unauthenticated, "UNAUTHENTICATED"));
        expect(await viaConnectEs(sessions.getSession({ sessionId: randomUUID() }, { headers: bearer("nope") }))).toEqual(
          seen(Code.Unauthenticated, "TOKEN_INVALID"),
        );
      });
    });
  }

  it("the Connect JSON error a curl user sees names the reason in its details", async () => {
    const res = await fetch(`http://127.0.0.1:${server.httpPort}/${SessionService.typeName}/GetSession`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(KEYS.alice) },
      body: JSON.stringify({ sessionId: "3f1b1c8e-0000-4000-8000-000000000000" }),
    });
    expect(res.headers.get("qingyu-reason")).toBe("SESSION_NOT_FOUND");
    const body = (await res.json()) as { code: string; details: { type: string; debug: unknown }[] };
    expect(body.code).toBe("not_found");
    expect(body.details.map((d) => [d.type, d.debug])).toEqual([
      ["google.rpc.ErrorInfo", { reason: "SESSION_NOT_FOUND", domain: "qingyu.dev", metadata: { session_id: "3f1b1c8e-0000-4000-8000-000000000000" } }],
    ]);
  });

  // The run's globalSetup has checked for python3-grpcio, python3-protobuf and protoc: this always runs.
  it("Python grpcio reads qingyu-reason from the trailing metadata", async () => {
    const gen = tempDir("qingyu-py-reasons-");
    execFileSync("protoc", [
      "-I",
      join(root, "proto"),
      `--python_out=${gen}`,
      "qingyu/agent/v1/agent.proto",
      "qingyu/agent/v1/session.proto",
      "qingyu/agent/v1/tool.proto",
      "qingyu/agent/v1/event.proto",
    ]);
    const out = await runPython([join(root, "test/support/error_reasons.py"), `127.0.0.1:${server.grpcPort}`, KEYS.alice, KEYS.python], gen);
    const cases = JSON.parse(out) as Record<string, { code: string; reason?: string; details_bin?: boolean }>;
    expect(cases).toEqual({
      session_not_found: { code: "NOT_FOUND", reason: "SESSION_NOT_FOUND", details_bin: true },
      stale_version: { code: "ABORTED", reason: "STALE_VERSION", details_bin: true },
      invalid_field: { code: "INVALID_ARGUMENT", reason: "INVALID_FIELD", details_bin: true },
      unauthenticated: { code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED", details_bin: true },
      token_invalid: { code: "UNAUTHENTICATED", reason: "TOKEN_INVALID", details_bin: true },
      rate_limit_first: { code: "OK" },
      rate_limited: { code: "RESOURCE_EXHAUSTED", reason: "RATE_LIMITED", details_bin: true },
    });
  });
});
