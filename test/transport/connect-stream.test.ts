// Connect's streaming protocol served by our own code (connect-stream.ts), read by
// connect-es's own client (the reference for the protocol) and by hand for what
// no well-behaved client sends.
import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, ConnectError as EsConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentService,
  ExecuteStreamRequestSchema,
  ExecuteStreamResponseSchema,
  type ExecuteStreamRequest,
  type ExecuteStreamResponse,
} from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { CallTracker } from "../../src/transport/call-tracker.ts";
import { ConnectStreams } from "../../src/transport/connect-stream.ts";
import { ErrorEdge } from "../../src/transport/edge-error.ts";
import { OutageLog } from "../../src/transport/outage-log.ts";
import type { CallContext, HostedService } from "../../src/transport/types.ts";
import { closeFormServers, serveForm } from "../support/form-server.ts";

const silent = pino({ level: "silent" });
const LIMITS = { maxMessageBytes: 4096, maxMetadataBytes: 8192, maxMapEntries: 4, maxMapBytes: 1000, defaultDeadlineMs: 60_000, maxDeadlineMs: 120_000 };
const PATH = "/qingyu.agent.v1.AgentService/ExecuteStream";

type Impl = (req: ExecuteStreamRequest, call: CallContext) => AsyncIterable<ExecuteStreamResponse>;

const delta = (text: string) => create(ExecuteStreamResponseSchema, { event: { case: "delta", value: { text } } });
const completed = (output: string) => create(ExecuteStreamResponseSchema, { event: { case: "completed", value: { success: true, output } } });

afterEach(closeFormServers);

/** ConnectStreams in front of a 404, on a real HTTP/1.1 server, as HttpTransport mounts it in front of connect-node. */
async function serve(impl: Impl) {
  const services: HostedService[] = [{ service: AgentService as never, impl: { executeStream: impl } as never, track: {} }];
  const streams = new ConnectStreams(services, new CallTracker(), { limits: LIMITS, edge: new ErrorEdge(silent, new OutageLog(silent, 30_000)) });
  return serveForm(streams);
}

const clientOf = (base: string, useBinaryFormat: boolean) =>
  createClient(AgentService, createConnectTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat }));

/** A request body: one envelope with these flags (the length may lie). */
function envelope(message: Uint8Array, flags = 0, declared = message.length): Uint8Array {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(declared, 1);
  out.set(message, 5);
  return out;
}

/** Posts raw bytes; returns the HTTP status and the end-of-stream message's JSON. */
async function post(base: string, body: Uint8Array, headers: Record<string, string> = { "content-type": "application/connect+proto" }) {
  const res = await fetch(`${base}${PATH}`, { method: "POST", headers, body, signal: AbortSignal.timeout(10_000) });
  const bytes = Buffer.from(await res.arrayBuffer());
  let end: { error?: { code: string; message: string }; metadata?: Record<string, string[]> } | undefined;
  for (let at = 0; at + 5 <= bytes.length;) {
    const length = bytes.readUInt32BE(at + 1);
    if (bytes[at]! & 2) end = JSON.parse(bytes.subarray(at + 5, at + 5 + length).toString("utf8"));
    at += 5 + length;
  }
  return { status: res.status, type: res.headers.get("content-type"), end };
}

describe("Connect streaming served without connect-node", () => {
  it.each([false, true])("streams each message to connect-es's client, in order, then ends (binary: %s)", async (binary) => {
    const seen: string[] = [];
    const { base, handled } = await serve(async function* (req, call) {
      seen.push(req.task);
      call.setTrailer("x-answered-by", "test");
      yield delta("a");
      yield delta("b");
      yield completed("ab");
    });
    const got: string[] = [];
    for await (const m of clientOf(base, binary).executeStream({ agentId: "a", task: "go" })) {
      got.push(m.event.case === "delta" ? m.event.value.text : (m.event.case ?? ""));
    }
    expect(got).toEqual(["a", "b", "completed"]);
    expect(seen).toEqual(["go"]);
    expect(handled()).toBe(1);
  });

  it("ends a stream that failed with the error, its details and its metadata, after what was sent", async () => {
    const { base } = await serve(async function* () {
      yield delta("half");
      throw withReason(new ConnectError("the upstream went away", Code.Unavailable, { "retry-after-ms": "250" }), ErrorReason.PROVIDER_UNAVAILABLE, {});
    });
    const got: string[] = [];
    const err = await (async () => {
      for await (const m of clientOf(base, false).executeStream({ agentId: "a", task: "go" })) got.push(m.event.case ?? "");
    })().then(
      () => undefined,
      (e: unknown) => EsConnectError.from(e),
    );
    expect(got).toEqual(["delta"]);
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.rawMessage).toBe("the upstream went away");
    expect(err?.metadata.get("retry-after-ms")).toBe("250");
    expect(err?.details.length).toBeGreaterThan(0);
  });

  it("refuses a request message that does not decode as the method's input: INVALID_ARGUMENT in the end-of-stream message of a 200", async () => {
    let ran = false;
    const { base } = await serve(async function* () {
      ran = true;
      yield completed("x");
    });
    const answer = await post(base, envelope(Buffer.from([0xff, 0xff, 0xff])));
    expect(answer.status).toBe(200);
    expect(answer.type).toBe("application/connect+proto");
    expect(answer.end?.error?.code).toBe("invalid_argument");
    expect(answer.end?.error?.message).toContain("is not a valid qingyu.agent.v1.ExecuteStreamRequest message");
    expect(ran).toBe(false);
  });

  it("refuses a missing, cut, doubled, compressed or oversized request message, and runs nothing", async () => {
    let ran = 0;
    const { base } = await serve(async function* () {
      ran++;
      yield completed("x");
    });
    const message = toBinary(ExecuteStreamRequestSchema, create(ExecuteStreamRequestSchema, { agentId: "a", task: "t" }));
    const cases: Array<[Uint8Array, string, string]> = [
      [new Uint8Array(0), "invalid_argument", "missing input message"],
      [envelope(message, 0, message.length + 10), "invalid_argument", "incomplete envelope"],
      [Buffer.concat([envelope(message), envelope(message)]), "invalid_argument", "extra input message"],
      // Bytes after the message that are not a whole envelope: a cut one, as connect-node says.
      [Buffer.concat([envelope(message), Buffer.from([0, 0, 0])]), "invalid_argument", "incomplete envelope"],
      [Buffer.concat([envelope(message), envelope(message, 0, message.length + 1)]), "invalid_argument", "incomplete envelope"],
      [envelope(message, 1), "invalid_argument", "compressed message without connect-content-encoding"],
      [envelope(Buffer.alloc(10), 0, LIMITS.maxMessageBytes + 1), "resource_exhausted", `larger than configured readMaxBytes ${LIMITS.maxMessageBytes}`],
    ];
    for (const [body, code, words] of cases) {
      const answer = await post(base, body);
      expect([answer.status, answer.end?.error?.code], words).toEqual([200, code]);
      expect(answer.end?.error?.message).toContain(words);
    }
    expect(ran).toBe(0);
  });

  it("refuses a map over its bounds in a binary request before the service runs", async () => {
    let ran = false;
    const { base } = await serve(async function* () {
      ran = true;
      yield completed("x");
    });
    const metadata = Object.fromEntries(Array.from({ length: LIMITS.maxMapEntries + 1 }, (_, i) => [`k${i}`, "v"]));
    const message = toBinary(ExecuteStreamRequestSchema, create(ExecuteStreamRequestSchema, { agentId: "a", task: "t", metadata }));
    const answer = await post(base, envelope(message));
    expect(answer.end?.error?.code).toBe("invalid_argument");
    expect(answer.end?.error?.message).toMatch(/metadata: has more than 4 entries/);
    expect(ran).toBe(false);
  });

  it("leaves compressed requests, other content types and other methods to connect-node", async () => {
    const { base, handled } = await serve(async function* () {
      yield completed("x");
    });
    const message = envelope(Buffer.from("{}"));
    const others: Array<[string, Record<string, string>]> = [
      [PATH, { "content-type": "application/connect+json", "connect-content-encoding": "gzip" }],
      [PATH, { "content-type": "application/grpc-web+proto" }],
      [PATH, { "content-type": "application/json" }],
      ["/qingyu.agent.v1.AgentService/Execute", { "content-type": "application/connect+json" }],
    ];
    for (const [path, headers] of others) {
      const res = await fetch(`${base}${path}`, { method: "POST", headers, body: message });
      expect(res.status, JSON.stringify(headers)).toBe(404);
      await res.arrayBuffer();
    }
    expect(handled()).toBe(0);
  });

  it("ends the call at the client's deadline (connect-timeout-ms) with DEADLINE_EXCEEDED, in the service's signal and the end-of-stream message", async () => {
    let reason: unknown;
    const { base } = await serve(async function* (_req, call) {
      yield delta("a");
      reason = await new Promise((resolve) => call.signal.addEventListener("abort", () => resolve(call.signal.reason)));
    });
    const message = toBinary(ExecuteStreamRequestSchema, create(ExecuteStreamRequestSchema, { agentId: "a", task: "t" }));
    const answer = await post(base, envelope(message), { "content-type": "application/connect+proto", "connect-timeout-ms": "150" });
    expect(answer.end?.error?.code).toBe("deadline_exceeded");
    expect((reason as ConnectError | undefined)?.code).toBe(Code.DeadlineExceeded);
  });
});
