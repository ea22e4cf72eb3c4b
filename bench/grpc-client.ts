// The grpc-js client side: the correctness check h2load cannot make (it counts
// HTTP 200 even when grpc-status is an error), latency percentiles, and
// streaming. A Node client saturates its own core first, so nothing here is a
// throughput measurement of the server.
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  ExecuteRequestSchema,
  ExecuteResponseSchema,
  ExecuteStreamRequestSchema,
  ExecuteStreamResponseSchema,
  type ExecuteRequest,
  type ExecuteResponse,
  type ExecuteStreamResponse,
} from "../src/gen/qingyu/agent/v1/agent_pb.ts";

export const EXECUTE = "/qingyu.agent.v1.AgentService/Execute";
export const EXECUTE_STREAM = "/qingyu.agent.v1.AgentService/ExecuteStream";

const encode = (schema: DescMessage) => (message: unknown) => Buffer.from(toBinary(schema, message as never));
const decode =
  <T>(schema: DescMessage) =>
  (bytes: Buffer) =>
    fromBinary(schema, bytes) as T;
const encodeRequest = encode(ExecuteRequestSchema);
const decodeResponse = decode<ExecuteResponse>(ExecuteResponseSchema);
const encodeStreamRequest = encode(ExecuteStreamRequestSchema);
const decodeStreamResponse = decode<ExecuteStreamResponse>(ExecuteStreamResponseSchema);

/**
 * The API key the full-suite server's auth plugin accepts. Every server gets
 * it, so all do the same client work; the others ignore the header.
 */
export const BENCH_API_KEY = "bench-key-0123456789abcdef";
const authMetadata = (() => {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${BENCH_API_KEY}`);
  return md;
})();

/** A channel; `options` (e.g. "grpc.use_local_subchannel_pool": 1) to get a connection of its own. */
export function client(port: number, options?: grpc.ChannelOptions): grpc.Client {
  return new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
}

export function execute(c: grpc.Client, req: ExecuteRequest): Promise<ExecuteResponse> {
  return new Promise((res, rej) =>
    c.makeUnaryRequest(EXECUTE, encodeRequest, decodeResponse, req, authMetadata.clone(), (err, value) => (err ? rej(err) : res(value!))),
  );
}

/** One real call that must come back OK and echo the task; throws with the status otherwise. */
export async function checkExecute(port: number, task: string, agentId = "echo"): Promise<void> {
  const c = client(port);
  try {
    const res = await execute(c, create(ExecuteRequestSchema, { agentId, task }));
    if (!res.result?.success || !res.result.output.includes(task)) {
      throw new Error(`Execute answered OK but not with the task: ${JSON.stringify(res.result?.output)}`);
    }
  } finally {
    c.close();
  }
}

export interface LatencyRun {
  server: string;
  inFlight: number;
  calls: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  callsPerSec: number;
}

export function percentile(sorted: Float64Array, p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

/**
 * Closed loop: `inFlight` workers each issue the next call as soon as the last
 * returns, over one channel (one HTTP/2 connection). Calls that start during
 * warm-up are not recorded.
 */
export async function latency(
  server: string,
  port: number,
  req: ExecuteRequest,
  inFlight: number,
  seconds: number,
  warmupSeconds: number,
): Promise<LatencyRun> {
  const c = client(port);
  const samples: number[] = [];
  let errors = 0;
  let firstError: unknown;
  const t0 = performance.now();
  const measureFrom = t0 + warmupSeconds * 1000;
  const stopAt = measureFrom + seconds * 1000;
  const worker = async () => {
    for (let start = performance.now(); start < stopAt; start = performance.now()) {
      try {
        await execute(c, req);
        if (start >= measureFrom) samples.push(performance.now() - start);
      } catch (err) {
        errors++;
        firstError ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsed = (performance.now() - measureFrom) / 1000;
  c.close();
  if (errors) process.stderr.write(`bench: ${server} latency at ${inFlight} in flight: ${errors} errors, first: ${(firstError as Error).message}\n`);
  const sorted = Float64Array.from(samples).sort();
  return {
    server,
    inFlight,
    calls: samples.length,
    errors,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    callsPerSec: samples.length / elapsed,
  };
}

export interface StreamRun {
  server: string;
  calls: number;
  messages: number;
  msgsPerSec: number;
}

/** Starts one ExecuteStream call. */
export function openStream(c: grpc.Client, agentId: string, task: string): grpc.ClientReadableStream<ExecuteStreamResponse> {
  return c.makeServerStreamRequest(
    EXECUTE_STREAM,
    encodeStreamRequest,
    decodeStreamResponse,
    create(ExecuteStreamRequestSchema, { agentId, task }),
    authMetadata.clone(),
  );
}

function streamOnce(c: grpc.Client, task: string): Promise<number> {
  return new Promise((res, rej) => {
    let count = 0;
    const call = openStream(c, "echo", task);
    call.on("data", () => count++);
    call.on("error", rej);
    call.on("end", () => res(count));
  });
}

/** ExecuteStream calls one after another (one stream open at a time) for `seconds`; counts every message. */
export async function streaming(server: string, port: number, task: string, minMessages: number, seconds: number): Promise<StreamRun> {
  const c = client(port);
  try {
    await streamOnce(c, task); // warm-up: connection, JIT
    let calls = 0;
    let messages = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      const n = await streamOnce(c, task);
      if (n < minMessages) throw new Error(`${server}: ExecuteStream sent ${n} messages, expected at least ${minMessages}`);
      calls++;
      messages += n;
    }
    return { server, calls, messages, msgsPerSec: messages / ((performance.now() - t0) / 1000) };
  } finally {
    c.close();
  }
}
