import { Code, codeReason, ConnectError, ErrorReason, type ErrorReasonInfo, reasonOf, withReason } from "@qingyu/plugin-api";
import { create, toBinary, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { anyPack, AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { storeBackend } from "../clients/shared.ts";
import { toConnectError } from "../errors.ts";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../gen/google/rpc/status_pb.ts";
import { clip } from "../quote.ts";
import type { OutageLog } from "./outage-log.ts";

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
 * The one mapping of a failure to what the client sees, for both transports
 * and both ports, and the log lines failures cost: anything that was not
 * already a ConnectError is a bug of ours (INTERNAL, logged with its stack);
 * a store outage is logged with the driver's detail the client never sees,
 * throttled per store. One per server.
 */
export class ErrorEdge {
  constructor(
    private readonly log: Logger,
    private readonly outages: OutageLog,
  ) {}

  /** `err`, thrown by a service method (or the admission before it), as the client receives it. */
  toClient(err: unknown, method: DescMethod): ConnectError {
    const error = toConnectError(err);
    if (error.code === Code.Internal && !(err instanceof ConnectError)) {
      this.log.error({ err, method: `${method.parent.typeName}/${method.name}` }, "unhandled error in service method");
    }
    this.record(error);
    return explained(error);
  }

  /** Logs what an error the client will see says only to the operator (a store outage's detail); for errors sent other ways (a batch item's). */
  record(error: ConnectError): void {
    if (error.code === Code.Unavailable && error.cause !== undefined && reasonOf(error).reason === ErrorReason.STORE_UNAVAILABLE) {
      this.outages.note(error.rawMessage.replace(/ unavailable$/, ""), error.cause, storeBackend(error));
    }
  }
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
