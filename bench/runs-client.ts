// The runs phase's grpc-js client: StartRun (attached) and ExecuteStream read
// to their end, WatchRun read until a given seq, CancelRun. Each call returns
// what it received with the wall time from the call to its last message.
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ExecuteStreamRequestSchema, ExecuteStreamResponseSchema, type AgentResult, type ExecuteStreamResponse } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import {
  CancelMode,
  CancelRunRequestSchema,
  CancelRunResponseSchema,
  StartRunRequestSchema,
  StartRunResponseSchema,
  WatchRunRequestSchema,
  WatchRunResponseSchema,
  type RunEvent,
  type StartRunResponse,
  type WatchRunResponse,
} from "../src/gen/qingyu/agent/v1/run_pb.ts";
import { BENCH_API_KEY } from "./grpc-client.ts";

const RUNS = "/qingyu.agent.v1.RunService";
const EXECUTE_STREAM = "/qingyu.agent.v1.AgentService/ExecuteStream";

const encode = (schema: DescMessage) => (message: unknown) => Buffer.from(toBinary(schema, message as never));
const decode =
  <T>(schema: DescMessage) =>
  (bytes: Buffer) =>
    fromBinary(schema, bytes) as T;

function metadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${BENCH_API_KEY}`);
  return md;
}

/** Reads a server stream to its end (or until `stop` says so, then cancels it); resolves with what came and the wall ms. */
function readStream<T>(call: grpc.ClientReadableStream<T>, stop?: (m: T) => boolean): Promise<{ messages: T[]; ms: number }> {
  const t0 = performance.now();
  const messages: T[] = [];
  return new Promise((res, rej) => {
    let stopped = false;
    call.on("data", (m: T) => {
      messages.push(m);
      if (!stopped && stop?.(m)) {
        stopped = true;
        const ms = performance.now() - t0;
        call.cancel();
        res({ messages, ms });
      }
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (!stopped) rej(err);
    });
    call.on("end", () => {
      if (!stopped) res({ messages, ms: performance.now() - t0 });
    });
  });
}

/** A StartRun: attached, every event of the run to its end; background, its `accepted` event. */
export async function startRun(c: grpc.Client, agentId: string, task: string, background = false): Promise<{ events: RunEvent[]; ms: number }> {
  const req = create(StartRunRequestSchema, { execute: { agentId, task }, options: { background } });
  const call = c.makeServerStreamRequest(RUNS + "/StartRun", encode(StartRunRequestSchema), decode<StartRunResponse>(StartRunResponseSchema), req, metadata());
  const { messages, ms } = await readStream(call);
  return { events: messages.map((m) => m.event!), ms };
}

/** An ExecuteStream call read to its end; its completed result. */
export async function executeStream(c: grpc.Client, agentId: string, task: string): Promise<{ result?: AgentResult; messages: number; ms: number }> {
  const req = create(ExecuteStreamRequestSchema, { agentId, task });
  const call = c.makeServerStreamRequest(
    EXECUTE_STREAM,
    encode(ExecuteStreamRequestSchema),
    decode<ExecuteStreamResponse>(ExecuteStreamResponseSchema),
    req,
    metadata(),
  );
  const { messages, ms } = await readStream(call);
  const done = messages.findLast((m) => m.event.case === "completed");
  return { result: done?.event.case === "completed" ? done.event.value : undefined, messages: messages.length, ms };
}

/** WatchRun after `afterSeq`, until the stream ends or `until` is reached: an event with that seq or more, or one it accepts. */
export async function watchRun(
  c: grpc.Client,
  runId: string,
  afterSeq: number,
  until: number | ((e: RunEvent) => boolean) = Infinity,
): Promise<{ events: RunEvent[]; seqs: number[]; ms: number }> {
  const req = create(WatchRunRequestSchema, { runId, afterSeq: BigInt(afterSeq) });
  const call = c.makeServerStreamRequest(RUNS + "/WatchRun", encode(WatchRunRequestSchema), decode<WatchRunResponse>(WatchRunResponseSchema), req, metadata());
  const reached = typeof until === "number" ? (e: RunEvent) => Number(e.seq) >= until : until;
  const { messages, ms } = await readStream(call, (m) => reached(m.event!));
  const events = messages.map((m) => m.event!);
  return { events, seqs: events.map((e) => Number(e.seq)), ms };
}

/** CancelRun (interrupt); resolves once the run has stopped. */
export function cancelRun(c: grpc.Client, runId: string): Promise<void> {
  const req = create(CancelRunRequestSchema, { runId, mode: CancelMode.INTERRUPT });
  return new Promise((res, rej) =>
    c.makeUnaryRequest(RUNS + "/CancelRun", encode(CancelRunRequestSchema), decode(CancelRunResponseSchema), req, metadata(), (err) =>
      err ? rej(err) : res(),
    ),
  );
}

/** What is wrong with `seqs`, if anything: they must rise strictly and, with `dense`, by one each time from `from`. */
export function seqProblem(what: string, seqs: readonly number[], dense: boolean, from?: number): string | undefined {
  if (from !== undefined && seqs[0] !== from) return `${what}: first seq ${seqs[0]}, expected ${from}`;
  for (let i = 1; i < seqs.length; i++) {
    const [a, b] = [seqs[i - 1]!, seqs[i]!];
    if (b <= a || (dense && b !== a + 1)) return `${what}: seq ${b} after ${a} (${dense ? "a gap or repeat" : "out of order"})`;
  }
  return undefined;
}
