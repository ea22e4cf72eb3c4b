import { create } from "@bufbuild/protobuf";
import { status, type ServiceError } from "@grpc/grpc-js";
import { AdminService, ReloadRequestSchema, type ReloadResponse } from "../gen/qingyu/agent/v1/admin_pb.ts";
import { env, exit } from "../runtime/process.ts";
import { commandArgs } from "./args.ts";
import { serverAddress } from "./server-address.mjs";
import { unaryCall } from "./unary-call.ts";
import { usage } from "./usage.ts";

/** Asks a running server to reload through AdminService.Reload. */
export function requestReload(address: string, token: string | undefined, timeoutMs = 30_000): Promise<ReloadResponse> {
  return unaryCall(address, AdminService.method.reload, create(ReloadRequestSchema), { token, timeoutMs });
}

/** `qingyu reload [--config FILE] [--address HOST:PORT] [--token TOKEN]`: the server's answer on stdout, exit 1 when it failed. */
export async function reload(args: readonly string[]): Promise<void> {
  const parsed = commandArgs("reload", args, { config: { type: "string" }, address: { type: "string" }, token: { type: "string" } });
  if (parsed.help) return void process.stdout.write(usage("reload"));
  const { values } = parsed;
  const address = values.address ?? (await serverAddress(values.config, env));
  let res: ReloadResponse;
  try {
    res = await requestReload(address, values.token ?? env.QINGYU_TOKEN);
  } catch (err) {
    // grpc-js's message begins with the status number; the code's name and the server's words read better.
    const { code, details } = err as Partial<ServiceError>;
    const said = details !== undefined && code !== undefined ? `${status[code] ?? code}: ${details}` : (err as Error).message;
    process.stderr.write(`qingyu: reload failed: ${said}\n`);
    return exit(1);
  }
  process.stdout.write(`reloaded: generation ${res.generation}, pipeline: ${res.pipeline.join(" → ") || "(empty)"}\n`);
  for (const warning of res.warnings) process.stdout.write(`warning: ${warning}\n`);
}
