import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";

/**
 * `qingyu health`: asks a server's grpc.health.v1.Health/Check; true when
 * SERVING. For container health checks, with no grpc_health_probe to install.
 */
export async function checkHealth(address: string, service = "", timeoutMs = 3000): Promise<{ serving: boolean; status: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    const res = await new Promise<ReturnType<typeof fromBinary<typeof HealthCheckResponseSchema>>>((resolve, reject) => {
      client.makeUnaryRequest(
        `/${Health.typeName}/Check`,
        (req: Uint8Array) => Buffer.from(req),
        (bytes: Buffer) => fromBinary(HealthCheckResponseSchema, bytes),
        toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })),
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value!)),
      );
    });
    return { serving: res.status === HealthCheckResponse_ServingStatus.SERVING, status: HealthCheckResponse_ServingStatus[res.status] ?? String(res.status) };
  } finally {
    client.close();
  }
}
