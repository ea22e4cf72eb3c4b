import { create } from "@bufbuild/protobuf";
import { AdminService, ReloadRequestSchema, type ReloadResponse } from "../gen/qingyu/agent/v1/admin_pb.ts";
import { unaryCall } from "./unary-call.ts";

/** `qingyu reload`: asks a running server to reload through AdminService.Reload. */
export function requestReload(address: string, token: string | undefined, timeoutMs = 30_000): Promise<ReloadResponse> {
  return unaryCall(address, AdminService.method.reload, create(ReloadRequestSchema), { token, timeoutMs });
}
