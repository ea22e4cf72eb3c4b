import { Code, ConnectError } from "@qingyu/plugin-api";
import type { DescMethod } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { toConnectError } from "../errors.ts";
import { clip } from "../quote.ts";

/** Longest status message sent, in characters (percent-encoded, grpc-message may take three bytes each). */
const MAX_STATUS_MESSAGE = 1024;

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
  // Whatever a message quotes, the status line stays small: grpc-message travels in a header
  // block, and a client whose header limit it exceeds never sees the status, only its deadline.
  if (error.rawMessage.length <= MAX_STATUS_MESSAGE) return error;
  return new ConnectError(clip(error.rawMessage, MAX_STATUS_MESSAGE), error.code, error.metadata, error.details, error.cause);
}
