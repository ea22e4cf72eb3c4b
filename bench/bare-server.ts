// The baseline: a bare @grpc/grpc-js server on AgentService's method paths and
// wire types, doing the least work a real server must do per call (decode the
// request, build the response, encode it), with protobuf-es like our server.
// Run as its own process so it gets its own event loop, as ours does; it
// prints one JSON line with its port on stdout and nothing else.
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  ExecuteRequestSchema,
  ExecuteResponseSchema,
  ExecuteStreamRequestSchema,
  ExecuteStreamResponseSchema,
  type ExecuteRequest,
  type ExecuteStreamRequest,
  type ExecuteStreamResponse,
} from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { dueAt, parseTick, stamp, untilDue } from "./tick.ts";

const SERVICE = "/qingyu.agent.v1.AgentService";

// Same serializer shape as src/transport/grpc-adapter.ts: a Buffer view, no copy.
const encode = (schema: DescMessage) => (message: unknown) => {
  const bytes = toBinary(schema, message as never);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
};
const decode = (schema: DescMessage) => (bytes: Buffer) => fromBinary(schema, bytes);

const definition: grpc.ServiceDefinition = {
  execute: {
    path: `${SERVICE}/Execute`,
    requestStream: false,
    responseStream: false,
    requestSerialize: encode(ExecuteRequestSchema),
    requestDeserialize: decode(ExecuteRequestSchema),
    responseSerialize: encode(ExecuteResponseSchema),
    responseDeserialize: decode(ExecuteResponseSchema),
  },
  executeStream: {
    path: `${SERVICE}/ExecuteStream`,
    requestStream: false,
    responseStream: true,
    requestSerialize: encode(ExecuteStreamRequestSchema),
    requestDeserialize: decode(ExecuteStreamRequestSchema),
    responseSerialize: encode(ExecuteStreamResponseSchema),
    responseDeserialize: decode(ExecuteStreamResponseSchema),
  },
};

const handlers: grpc.UntypedServiceImplementation = {
  execute(call: grpc.ServerUnaryCall<ExecuteRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
    const req = call.request;
    // Field for field what ours fills in, so both responses cost about the same to encode.
    callback(
      null,
      create(ExecuteResponseSchema, {
        result: {
          success: true,
          output: req.task,
          model: "echo-1",
          finishReason: "stop",
          usage: { inputTokens: 1, outputTokens: 1 },
          durationMs: 0n,
        },
        sessionId: req.sessionId,
      }),
    );
  },

  // One TextDelta per word, honouring backpressure the way our server's pump
  // does, so a slow reader costs both servers the same. The agents "clock" and
  // "idle" are the bench's timed and idle streams, below.
  async executeStream(call: grpc.ServerWritableStream<ExecuteStreamRequest, ExecuteStreamResponse>) {
    if (call.request.agentId === "clock") return clockStream(call);
    if (call.request.agentId === "idle") return idleStream(call);
    let cancelled = false;
    call.once("cancelled", () => {
      cancelled = true;
      call.emit("drain"); // wakes a writer parked below
    });
    for (const word of call.request.task.split(/(?<=\s)/)) {
      if (cancelled) return;
      const ok = call.write(create(ExecuteStreamResponseSchema, { event: { case: "delta", value: { text: word } } }));
      if (!ok) await new Promise((resolve) => call.once("drain", resolve));
    }
    call.end();
  },
};

type StreamCall = grpc.ServerWritableStream<ExecuteStreamRequest, ExecuteStreamResponse>;
const started = (call: StreamCall) =>
  create(ExecuteStreamResponseSchema, {
    event: { case: "started", value: { agentId: call.request.agentId, sessionId: call.request.sessionId, model: "echo-1" } },
  });

// The token-latency phase: stamped tokens on the schedule of bench/tick.ts, as our server's bench-clock provider yields them.
async function clockStream(call: StreamCall): Promise<void> {
  const { intervalMs, count } = parseTick(call.request.task);
  const cancel = new AbortController();
  call.once("cancelled", () => {
    cancel.abort();
    call.emit("drain");
  });
  const start = process.hrtime.bigint();
  call.write(started(call));
  try {
    for (let i = 1; i <= count; i++) {
      const due = dueAt(start, intervalMs, i);
      await untilDue(due, cancel.signal);
      if (!call.write(create(ExecuteStreamResponseSchema, { event: { case: "delta", value: { text: stamp(due) } } }))) {
        await new Promise((resolve) => call.once("drain", resolve));
      }
      if (cancel.signal.aborted) return;
    }
  } catch {
    return; // cancelled while waiting
  }
  call.write(create(ExecuteStreamResponseSchema, { event: { case: "completed", value: { success: true, model: "echo-1", finishReason: "stop" } } }));
  call.end();
}

// The idle-streams phase: Started, then nothing until the client goes, with the
// one timer a waiting provider holds (our server's is the echo provider's token delay).
function idleStream(call: StreamCall): void {
  call.write(started(call));
  const timer = setTimeout(() => call.end(), 600_000);
  call.once("cancelled", () => clearTimeout(timer));
}

const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
server.addService(definition, handlers);
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`bare-server: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ msg: "listening", grpcPort: port })}\n`);
});

// The parent stops us with SIGTERM; nothing to drain in a benchmark.
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    server.forceShutdown();
    process.exit(0);
  });
}
