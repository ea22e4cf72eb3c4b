import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type DescMethodUnary, type MessageShape } from "@bufbuild/protobuf";

/** One unary call to a running server, on a channel opened and closed for it (the CLI's commands). */
export function unaryCall<I extends DescMessage, O extends DescMessage>(
  address: string,
  method: DescMethodUnary<I, O>,
  request: MessageShape<I>,
  options: { token?: string; timeoutMs: number },
): Promise<MessageShape<O>> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (options.token) metadata.set("authorization", `Bearer ${options.token}`);
  return new Promise<MessageShape<O>>((resolve, reject) => {
    client.makeUnaryRequest(
      `/${method.parent.typeName}/${method.name}`,
      (req: MessageShape<I>) => Buffer.from(toBinary(method.input, req)),
      (bytes: Buffer) => fromBinary(method.output, bytes),
      request,
      metadata,
      { deadline: Date.now() + options.timeoutMs },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  }).finally(() => client.close());
}
