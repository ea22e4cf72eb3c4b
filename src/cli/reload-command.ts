import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { AdminService, ReloadRequestSchema, ReloadResponseSchema, type ReloadResponse } from "../gen/qingyu/agent/v1/admin_pb.ts";

/** `qingyu reload`: asks a running server to reload through AdminService.Reload. */
export function requestReload(address: string, token: string | undefined, timeoutMs = 30_000): Promise<ReloadResponse> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  return new Promise<ReloadResponse>((resolve, reject) => {
    client.makeUnaryRequest(
      `/${AdminService.typeName}/Reload`,
      (req: Uint8Array) => Buffer.from(req),
      (bytes: Buffer) => fromBinary(ReloadResponseSchema, bytes),
      toBinary(ReloadRequestSchema, create(ReloadRequestSchema)),
      metadata,
      { deadline: Date.now() + timeoutMs },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  }).finally(() => client.close());
}
