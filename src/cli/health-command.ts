import { create } from "@bufbuild/protobuf";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
import { unaryCall } from "./unary-call.ts";

/**
 * `qingyu health`: asks a server's grpc.health.v1.Health/Check; true when
 * SERVING. For container health checks, with no grpc_health_probe to install.
 */
export async function checkHealth(address: string, service = "", timeoutMs = 3000): Promise<{ serving: boolean; status: string }> {
  const res = await unaryCall(address, Health.method.check, create(HealthCheckRequestSchema, { service }), { timeoutMs });
  return { serving: res.status === HealthCheckResponse_ServingStatus.SERVING, status: HealthCheckResponse_ServingStatus[res.status] ?? String(res.status) };
}
