// The requests of bench/openai-real.ts: each form a caller sends, to our ports
// and to the upstream directly, as light-client targets and h2load bodies.
import { create, toBinary } from "@bufbuild/protobuf";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ExecuteRequestSchema, ExecuteStreamRequestSchema } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { tempDir } from "./children.ts";
import { EXECUTE, EXECUTE_STREAM } from "./grpc-client.ts";
import { writeGrpcFrame } from "./h2load.ts";
import type { Target } from "./light-client.ts";

/** The agents of this phase: model names are bench/fake-openai.ts conventions. */
export const AGENTS = {
  /** Answers at once: every cost measured is a hop's, not the model's. */
  fast: { id: "openai", model: "bench" },
  /** A token per ms, each stamped with its send time: for each token's way to the client. */
  paced: { id: "openai-paced", model: "bench-gap1ms-stamp" },
} as const;
type Agent = (typeof AGENTS)[keyof typeof AGENTS];

const WORDS = [
  "the",
  "quarterly",
  "report",
  "shows",
  "revenue",
  "up",
  "by",
  "twelve",
  "percent",
  "over",
  "last",
  "year,",
  "driven",
  "mostly",
  "by",
  "new",
  "customers",
  "in",
  "Asia",
  "and",
];

/** A task of `n` words: the upstream answers one token per word of it. */
export const task = (n: number) => Array.from({ length: n }, (_, i) => WORDS[i % WORDS.length]).join(" ");

/** Where the processes listen. */
export interface Endpoints {
  upstreamUrl: string;
  grpcPort: number;
  httpPort: number;
}

const json = { "content-type": "application/json" };

/** The upstream called as a backend would without us: what the provider sends, JSON or streamed. */
export function direct(e: Endpoints, tokens: number, stream: boolean, agent: Agent = AGENTS.fast): Target {
  const body = {
    model: agent.model,
    messages: [{ role: "user", content: task(tokens) }],
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : { stream: false }),
  };
  return { name: "direct", url: `${e.upstreamUrl}/chat/completions`, headers: json, body: JSON.stringify(body), kind: stream ? "openai-sse" : "openai-json" };
}

const request = (tokens: number, agent: Agent) => ({ agentId: agent.id, task: task(tokens) });

/** Execute over Connect, JSON. */
export function connectUnary(e: Endpoints, tokens: number): Target {
  return {
    name: "connect",
    url: `http://127.0.0.1:${e.httpPort}${EXECUTE}`,
    headers: json,
    body: JSON.stringify(request(tokens, AGENTS.fast)),
    kind: "connect-unary",
  };
}

// One message in the 5-byte envelope gRPC and Connect streaming share: flags 0, then the length, big-endian.
const frame = (bytes: Uint8Array) => {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
};

/** ExecuteStream over Connect streaming: the JSON request in one envelope. */
export function connectStream(e: Endpoints, tokens: number, agent: Agent = AGENTS.fast): Target {
  return {
    name: "connect",
    url: `http://127.0.0.1:${e.httpPort}${EXECUTE_STREAM}`,
    headers: { "content-type": "application/connect+json" },
    body: frame(Buffer.from(JSON.stringify(request(tokens, agent)))).toString("base64"),
    bodyBase64: true,
    kind: "connect-stream",
  };
}

/** ExecuteStream as Server-Sent Events (README "Streaming over HTTP"). */
export function sse(e: Endpoints, tokens: number, agent: Agent = AGENTS.fast): Target {
  return {
    name: "sse",
    url: `http://127.0.0.1:${e.httpPort}${EXECUTE_STREAM}`,
    headers: { ...json, accept: "text/event-stream" },
    body: JSON.stringify(request(tokens, agent)),
    kind: "sse",
  };
}

/** ExecuteStream on the gRPC port over node:http2 (first token only; h2load drives the load). */
export function grpcStream(e: Endpoints, tokens: number): Target {
  const message = toBinary(ExecuteStreamRequestSchema, create(ExecuteStreamRequestSchema, request(tokens, AGENTS.fast)));
  return {
    name: "grpc",
    url: `http://127.0.0.1:${e.grpcPort}${EXECUTE_STREAM}`,
    headers: { "content-type": "application/grpc", te: "trailers" },
    body: frame(message).toString("base64"),
    bodyBase64: true,
    kind: "grpc-stream",
  };
}

/** h2load's request bodies for one answer size: Execute and ExecuteStream frames, and the upstream's JSON. */
export function h2loadBodies(e: Endpoints, tokens: number) {
  const dir = tempDir();
  const file = (name: string) => join(dir, name);
  writeGrpcFrame(file("execute.bin"), toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, request(tokens, AGENTS.fast))));
  writeGrpcFrame(file("stream.bin"), toBinary(ExecuteStreamRequestSchema, create(ExecuteStreamRequestSchema, request(tokens, AGENTS.fast))));
  writeFileSync(file("direct-json.json"), direct(e, tokens, false).body);
  writeFileSync(file("direct-sse.json"), direct(e, tokens, true).body);
  return { unary: file("execute.bin"), stream: file("stream.bin"), directUnary: file("direct-json.json"), directStream: file("direct-sse.json") };
}
