import { Code, ConnectError } from "@qingyu/plugin-api";
import { create, toBinary } from "@bufbuild/protobuf";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { gzipSync } from "node:zlib";
import pino from "pino";
import { ErrorEdge } from "../../src/transport/edge-error.ts";
import { OutageLog } from "../../src/transport/outage-log.ts";

const silent = pino({ level: "silent" });
import { describe, expect, it } from "vitest";
import { AgentService, ExecuteRequestSchema } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { guardRequests, preflightCall, type Admit } from "../../src/transport/preflight.ts";

const limits = { maxMapEntries: 10, maxMapBytes: 1000, maxMessageBytes: 4096 };
const metadata = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
const message = (n: number) => toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "a", metadata: metadata(n) }));

function envelope(payload: Uint8Array, flags = 0): Uint8Array {
  const out = Buffer.alloc(5 + payload.length);
  out[0] = flags;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

/** A handler that reads the whole body, as connect-node's do, and reports what it read. */
function reader(): UniversalHandler {
  const handler = async (req: UniversalServerRequest) => {
    let bytes = 0;
    for await (const chunk of req.body as AsyncIterable<Uint8Array>) bytes += chunk.byteLength;
    return { status: 200, header: new Headers({ "x-bytes": String(bytes), "x-preflight": req.contextValues?.get(preflightCall) ? "1" : "0" }) };
  };
  const method = AgentService.method.execute;
  return Object.assign(handler, {
    requestPath: "/p",
    protocolNames: [],
    allowedMethods: ["POST"],
    supportedContentType: () => true,
    service: AgentService,
    method,
  }) as never;
}

function request(body: Uint8Array, headers: Record<string, string>, pulled = { count: 0 }): UniversalServerRequest {
  return {
    httpVersion: "1.1",
    url: "http://x/p",
    method: "POST",
    header: new Headers(headers),
    signal: new AbortController().signal,
    body: (async function* () {
      pulled.count++;
      // Arrives in pieces, as a socket delivers it.
      for (let at = 0; at < body.length; at += 7) yield body.subarray(at, at + 7);
    })(),
  };
}

async function run(body: Uint8Array, headers: Record<string, string>, admit?: Admit, pulled?: { count: number }) {
  const handlers = [reader()];
  guardRequests(handlers, { admit, limits, edge: new ErrorEdge(silent, new OutageLog(silent, 30_000)) });
  try {
    const res = await handlers[0]!(request(body, headers, pulled));
    return { bytes: Number(res.header!.get("x-bytes")), preflight: res.header!.get("x-preflight") };
  } catch (err) {
    return { error: err as ConnectError };
  }
}

describe("guardRequests", () => {
  it("passes a request within the bounds through whole, and leaves the admitted call for the adapter", async () => {
    const body = message(10);
    expect(await run(body, { "content-type": "application/proto" })).toEqual({ bytes: body.length, preflight: "1" });
  });

  it("refuses too many map entries in each framing, compressed or not", async () => {
    const cases: [Uint8Array, Record<string, string>][] = [
      [message(11), { "content-type": "application/proto" }],
      [gzipSync(message(11)), { "content-type": "application/proto", "content-encoding": "gzip" }],
      [new TextEncoder().encode(JSON.stringify({ metadata: metadata(11) })), { "content-type": "application/json" }],
      [envelope(message(11)), { "content-type": "application/connect+proto" }],
      [envelope(gzipSync(message(11)), 1), { "content-type": "application/grpc-web+proto", "grpc-encoding": "gzip" }],
      [envelope(gzipSync(message(11)), 1), { "content-type": "application/grpc", "grpc-encoding": "gzip" }],
      [envelope(new TextEncoder().encode(JSON.stringify({ metadata: metadata(11) }))), { "content-type": "application/connect+json" }],
    ];
    for (const [body, headers] of cases) {
      const { error } = await run(body, headers);
      expect(error, JSON.stringify(headers)).toBeInstanceOf(ConnectError);
      expect(error!.code).toBe(Code.InvalidArgument);
      expect(error!.rawMessage).toMatch(/^metadata: has more than 10 entries/);
    }
  });

  it("refuses on the admit hook's error without reading the body", async () => {
    const pulled = { count: 0 };
    const seen: string[] = [];
    const admit: Admit = async (call, service, method) => {
      seen.push(`${service}/${method} ${call.header("authorization")}`);
      throw new ConnectError("no credentials", Code.Unauthenticated);
    };
    const { error } = await run(message(11), { "content-type": "application/proto", authorization: "Bearer x" }, admit, pulled);
    expect(error?.code).toBe(Code.Unauthenticated);
    expect(pulled.count).toBe(0);
    expect(seen).toEqual(["qingyu.agent.v1.AgentService/Execute Bearer x"]);
  });

  it("leaves a body it cannot decompress, or one over the message limit, to connect-node", async () => {
    expect((await run(new Uint8Array([1, 2, 3]), { "content-type": "application/proto", "content-encoding": "gzip" })).bytes).toBe(3);
    const huge = Buffer.alloc(limits.maxMessageBytes + 100, 0x2a);
    expect((await run(huge, { "content-type": "application/proto" })).bytes).toBe(huge.length);
  });
});
