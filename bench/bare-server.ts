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
  // does, so a slow reader costs both servers the same.
  async executeStream(call: grpc.ServerWritableStream<ExecuteStreamRequest, ExecuteStreamResponse>) {
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
