import {
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
  create,
} from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

/** Options of one call. */
export interface CallOptions {
  metadata?: Record<string, string>;
  /** Milliseconds from now. */
  timeoutMs?: number;
}

const serializer = (schema: DescMessage) => (m: unknown) => Buffer.from(toBinary(schema, m as never));
const deserializer = (schema: DescMessage) => (b: Buffer) => fromBinary(schema, b);

/**
 * A plain @grpc/grpc-js client driven by the protobuf-es descriptors, as any
 * backend's generated client would call the server.
 */
export class TestClient {
  readonly raw: grpc.Client;

  constructor(port: number, options?: grpc.ChannelOptions) {
    this.raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
  }

  private args(opts: CallOptions) {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
    const callOpts: grpc.CallOptions = opts.timeoutMs ? { deadline: Date.now() + opts.timeoutMs } : {};
    return { md, callOpts };
  }

  unary<I extends DescMessage, O extends DescMessage>(
    service: DescService,
    method: DescMethod & { input: I; output: O },
    req: MessageInitShape<I>,
    opts: CallOptions = {},
  ): Promise<MessageShape<O>> {
    const { md, callOpts } = this.args(opts);
    return new Promise((resolve, reject) => {
      this.raw.makeUnaryRequest(
        `/${service.typeName}/${method.name}`,
        serializer(method.input),
        deserializer(method.output),
        create(method.input, req),
        md,
        callOpts,
        (err, res) => (err ? reject(err) : resolve(res as MessageShape<O>)),
      );
    });
  }

  /** Starts a server stream; the returned call is a readable of messages. */
  stream<I extends DescMessage, O extends DescMessage>(
    service: DescService,
    method: DescMethod & { input: I; output: O },
    req: MessageInitShape<I>,
    opts: CallOptions = {},
  ): grpc.ClientReadableStream<MessageShape<O>> {
    const { md, callOpts } = this.args(opts);
    return this.raw.makeServerStreamRequest(
      `/${service.typeName}/${method.name}`,
      serializer(method.input),
      deserializer(method.output),
      create(method.input, req),
      md,
      callOpts,
    ) as grpc.ClientReadableStream<MessageShape<O>>;
  }

  /** Starts a bidirectional stream: write requests (created from their init shapes), read responses. */
  duplex<I extends DescMessage, O extends DescMessage>(
    service: DescService,
    method: DescMethod & { input: I; output: O },
    opts: CallOptions = {},
  ): grpc.ClientDuplexStream<MessageInitShape<I>, MessageShape<O>> {
    const { md, callOpts } = this.args(opts);
    const toBytes = serializer(method.input);
    return this.raw.makeBidiStreamRequest(
      `/${service.typeName}/${method.name}`,
      (m: MessageInitShape<I>) => toBytes(create(method.input, m)),
      deserializer(method.output),
      md,
      callOpts,
    ) as grpc.ClientDuplexStream<MessageInitShape<I>, MessageShape<O>>;
  }

  /** Reads a whole stream; rejects with the status error. */
  async collect<O>(call: grpc.ClientReadableStream<O>): Promise<O[]> {
    const out: O[] = [];
    for await (const m of call) out.push(m as O);
    return out;
  }

  close(): void {
    this.raw.close();
  }
}

/** The gRPC status of a rejected call. */
export async function statusOf(p: Promise<unknown>): Promise<{ code: grpc.status; details: string; metadata: grpc.Metadata }> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details, metadata: e.metadata };
  }
  throw new Error("expected the call to fail, but it succeeded");
}
