import { Code, ConnectError } from "@qingyu/plugin-api";
import type { DescMethod } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { toConnectError } from "../errors.ts";

/**
 * The one mapping of a service method's failure to what the client sees, for
 * both transports. Anything that was not already a ConnectError is a bug of
 * ours: it becomes INTERNAL and is logged with its stack.
 */
export function edgeError(err: unknown, method: DescMethod, log: Logger): ConnectError {
  const error = toConnectError(err);
  if (error.code === Code.Internal && !(err instanceof ConnectError)) {
    log.error({ err, method: `${method.parent.typeName}/${method.name}` }, "unhandled error in service method");
  }
  return error;
}
