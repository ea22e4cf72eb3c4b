// Shared by the fault suites: gRPC framed by hand over node:http2 (so a test can send
// what no well-behaved client would), Connect calls over fetch, a scripted upstream
// for provider faults, and the check every case ends with: the process is alive and
// still answers a normal call on both ports.
import http2 from "node:http2";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { expect } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import type { ServerProcess } from "../support/server-process.ts";

/** What came back for one hand-made HTTP/2 request. */
export interface RawReply {
  httpStatus: number;
  /** grpc-status from the trailers, or from the headers of a trailers-only answer. */
  grpcStatus?: number;
  grpcMessage?: string;
  body: Buffer;
  /** Set when the stream or session ended with an error instead of an answer (RST_STREAM, GOAWAY, socket closed). */
  error?: string;
}

/** One gRPC length-prefixed message; `declaredLength` may lie, `flags` 1 claims compression. */
export function grpcFrame(message: Uint8Array, flags = 0, declaredLength = message.length): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([head, message]);
}

/** One POST on a fresh HTTP/2 connection (or on `session`), with gRPC headers unless overridden. */
export async function rawGrpc(
  port: number,
  path: string,
  body: Buffer,
  headers: http2.OutgoingHttpHeaders = {},
  session?: http2.ClientHttp2Session,
  timeoutMs = 5000,
): Promise<RawReply> {
  const own = session ?? http2.connect(`http://127.0.0.1:${port}`);
  own.on("error", () => undefined); // reported through the stream below
  try {
    return await new Promise<RawReply>((resolve) => {
      const reply: RawReply = { httpStatus: 0, body: Buffer.alloc(0) };
      const chunks: Buffer[] = [];
      const req = own.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
      const timer = setTimeout(() => finish("no answer within the time limit"), timeoutMs);
      const finish = (error?: string) => {
        clearTimeout(timer);
        reply.body = Buffer.concat(chunks);
        if (error && reply.grpcStatus === undefined) reply.error = error;
        resolve(reply);
      };
      const status = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) reply.grpcStatus = Number(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) reply.grpcMessage = decodeURIComponent(String(h["grpc-message"]));
      };
      req.on("response", (h) => {
        reply.httpStatus = Number(h[":status"]);
        status(h);
      });
      req.on("trailers", status);
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("end", () => finish());
      req.on("error", (err: Error) => finish(err.message));
      req.on("close", () => finish(req.rstCode ? `stream reset (code ${req.rstCode})` : undefined));
      req.end(body);
    });
  } finally {
    if (!session) own.close();
  }
}

/** A Connect unary call with a raw body (so "__proto__" keys reach the server as written). */
export async function connectCall(port: number, path: string, body: string | Uint8Array, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${port}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** The process has not exited and answers an ordinary Execute on the gRPC port and over Connect. */
export async function expectServing(server: ServerProcess, agentId = "echo", authorization?: string): Promise<void> {
  const headers: Record<string, string> = authorization ? { authorization } : {};
  expect(server.child.exitCode, server.stderr()).toBeNull();
  expect(server.child.signalCode).toBeNull();
  const client = new TestClient(server.grpcPort);
  try {
    const res = await client.unary(AgentService, AgentService.method.execute, { agentId, task: "still here" }, { timeoutMs: 10_000, metadata: headers });
    expect(res.result?.output).toContain("still here");
  } finally {
    client.close();
  }
  const http = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", JSON.stringify({ agentId, task: "still here" }), headers);
  expect(http.status, http.text).toBe(200);
}

/** Resident set size of a process, in MiB (Linux). */
export function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(line?.split(/\s+/)[1]) / 1024;
}

/** Lines of the server's stderr that speak of an unhandled rejection or an uncaught exception. */
export function crashLines(server: ServerProcess): string[] {
  return server
    .stderr()
    .split("\n")
    .filter((l) => /unhandled|uncaught/i.test(l));
}

/** One scripted answer of the raw upstream: write whatever bytes the case needs. */
export type RawAnswer = (req: IncomingMessage, res: ServerResponse) => void;

export interface RawUpstream {
  /** Base URL, ending in /v1, for the openai provider's baseUrl. */
  readonly url: string;
  /** How many chat completion requests arrived. */
  readonly count: () => number;
  enqueue(...answers: RawAnswer[]): void;
  close(): Promise<void>;
}

/**
 * An HTTP server answering POST /v1/chat/completions with scripted raw answers
 * (malformed SSE, cut connections) that the JSON-level fake-openai cannot produce.
 */
export async function startRawUpstream(): Promise<RawUpstream> {
  const queue: RawAnswer[] = [];
  const sockets = new Set<Socket>();
  let count = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      count++;
      const answer = queue.shift();
      if (answer) answer(req, res);
      else sse(["data: [DONE]"])(req, res);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    count: () => count,
    enqueue: (...answers) => void queue.push(...answers),
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/** An SSE answer of these lines (each followed by a blank line); `then` "cut" destroys the socket instead of ending. */
export function sse(lines: string[], then: "end" | "cut" = "end"): RawAnswer {
  return (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (const line of lines) res.write(`${line}\n\n`);
    if (then === "cut") setTimeout(() => res.socket?.destroy(), 20);
    else res.end();
  };
}

/** The last frame of a complete answer: OpenAI-compatible servers always say why it finished. */
export const finish = (reason = "stop") =>
  `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta: {}, finish_reason: reason }] })}`;

/** A chat.completion.chunk frame carrying `content`. */
export const chunk = (content: string) =>
  `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}`;
