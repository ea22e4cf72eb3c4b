import { Code, codeReason, ConnectError, type ErrorReasonInfo, reasonOf, withReason } from "@qingyu/plugin-api";
import { create, toBinary, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { anyPack, AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { toConnectError } from "../errors.ts";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../gen/google/rpc/status_pb.ts";
import { clip } from "../quote.ts";

/** Longest status message sent, in characters (percent-encoded, grpc-message may take three bytes each). */
const MAX_STATUS_MESSAGE = 1024;
/** Longest ErrorInfo metadata value sent, in characters; and at most this many entries. */
const MAX_METADATA_VALUE = 512;
const MAX_METADATA_ENTRIES = 16;

/** google.rpc.ErrorInfo's domain on every error this server sends: the reasons below are this domain's. */
export const ERROR_DOMAIN = "qingyu.dev";

/** The trailer (on a Connect unary call, the header) naming the error's reason, for clients without the googleapis protos. */
export const REASON_HEADER = "qingyu-reason";

/** The trailer grpc-js sends a google.rpc.Status in, as bytes (connect-node writes its own). */
export const STATUS_DETAILS_HEADER = "grpc-status-details-bin";

// What ErrorInfo allows a reason to be; a plugin's reason of another shape is replaced by its code's name.
const REASON_SHAPE = /^[A-Z][A-Z0-9_]{0,62}$/;

/** An error detail as connect-es carries it: a message to encode, or one received as bytes. */
type Detail = { desc: DescMessage; value: unknown } | { type: string; value: Uint8Array };

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
  return explained(error);
}

/**
 * `error` as it leaves the server: its reason (the one attached, else its
 * code's name) as a google.rpc.ErrorInfo detail and a `qingyu-reason` trailer,
 * and a status message small enough for a header block (a client whose header
 * limit it exceeds never sees the status, only its deadline). A new error: the
 * one thrown may be thrown again (a memoised admission), and stays as it was.
 */
function explained(error: ConnectError): ConnectError {
  const { reason, metadata } = sentReason(error);
  const headers = new Headers(error.metadata);
  headers.set(REASON_HEADER, reason);
  const details: unknown[] = (error.details as Detail[]).filter((d) => !isErrorInfo(d));
  details.push({ desc: ErrorInfoSchema, value: { reason, domain: ERROR_DOMAIN, metadata } });
  const message = error.rawMessage.length <= MAX_STATUS_MESSAGE ? error.rawMessage : clip(error.rawMessage, MAX_STATUS_MESSAGE);
  return withReason(new ConnectError(message, error.code, headers, details, error.cause), reason, metadata);
}

/**
 * The reason of an error as a client receives it: the one attached, if it has
 * ErrorInfo's shape (else its code's name), with its metadata bounded.
 */
export function sentReason(error: ConnectError): ErrorReasonInfo {
  const info = reasonOf(error);
  const reason = REASON_SHAPE.test(info.reason) ? info.reason : codeReason(error.code);
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(info.metadata).slice(0, MAX_METADATA_ENTRIES)) {
    if (typeof value === "string") metadata[key] = clip(value, MAX_METADATA_VALUE);
  }
  return { reason, metadata };
}

/**
 * The google.rpc.Status of an error with its details, as the gRPC port sends
 * it in `grpc-status-details-bin` (connect-node encodes the same for the HTTP port).
 */
export function statusDetails(error: ConnectError): Uint8Array {
  const details: Any[] = (error.details as Detail[]).map((d) =>
    "desc" in d ? anyPack(d.desc, create(d.desc, d.value as never)) : create(AnySchema, { typeUrl: `type.googleapis.com/${d.type}`, value: d.value }),
  );
  return toBinary(StatusSchema, create(StatusSchema, { code: error.code, message: error.rawMessage, details }));
}

function isErrorInfo(detail: Detail): boolean {
  return ("desc" in detail ? detail.desc.typeName : detail.type) === ErrorInfoSchema.typeName;
}
