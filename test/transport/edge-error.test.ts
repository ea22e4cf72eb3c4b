import { Code as ConnectEsCode, ConnectError as ConnectEsError } from "@connectrpc/connect";
import { Code, ConnectError, ErrorReason, invalidArgument, notFound, reasonOf, withReason } from "@qingyu/plugin-api";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import pino from "pino";
import { OutageLog } from "../../src/transport/outage-log.ts";
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema, type ErrorInfo } from "../../src/gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.ts";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { ErrorEdge, ERROR_DOMAIN, REASON_HEADER, sentReason, statusDetails } from "../../src/transport/edge-error.ts";

const method = AgentService.method.execute;
const silent = pino({ level: "silent" });
const edge = new ErrorEdge(silent, new OutageLog(silent, 30_000));

/** The ErrorInfo details of an error as it left the edge, as connect-es reads them on the client. */
function infos(error: ConnectError): ErrorInfo[] {
  return (error.details as { desc: typeof ErrorInfoSchema; value: ErrorInfo }[]).filter((d) => d.desc === ErrorInfoSchema).map((d) => d.value);
}

describe("ErrorEdge: every error leaves with a reason", () => {
  it("sends an attached reason as an ErrorInfo detail (domain qingyu.dev) and a qingyu-reason trailer", () => {
    const thrown = invalidArgument("requests[3].session_id", "is not a session id");
    const sent = edge.toClient(thrown, method);
    expect(sent.code).toBe(Code.InvalidArgument);
    expect(sent.rawMessage).toBe(thrown.rawMessage);
    expect(sent.metadata.get(REASON_HEADER)).toBe("INVALID_FIELD");
    expect(infos(sent)).toEqual([{ reason: "INVALID_FIELD", domain: ERROR_DOMAIN, metadata: { field: "requests[3].session_id" } }]);
    expect(ERROR_DOMAIN).toBe("qingyu.dev");
  });

  it("keeps the error's own trailers and leaves the thrown error as it was (it may be thrown again)", () => {
    const thrown = withReason(new ConnectError("slow down", Code.ResourceExhausted, { "retry-after-ms": "900" }), ErrorReason.RATE_LIMITED, {
      retry_after_ms: "900",
    });
    const sent = edge.toClient(thrown, method);
    expect(sent).not.toBe(thrown);
    expect([sent.metadata.get("retry-after-ms"), sent.metadata.get(REASON_HEADER)]).toEqual(["900", "RATE_LIMITED"]);
    expect(infos(sent)[0]!.metadata).toEqual({ retry_after_ms: "900" });
    expect([thrown.details, thrown.metadata.has(REASON_HEADER)]).toEqual([[], false]);
    // Sent twice (a memoised admission refusal), it still carries one ErrorInfo.
    expect(infos(edge.toClient(sent, method))).toHaveLength(1);
  });

  it("gives an error without a reason its code's name, and a bug INTERNAL", () => {
    expect(edge.toClient(new ConnectError("gone", Code.NotFound), method).metadata.get(REASON_HEADER)).toBe("NOT_FOUND");
    expect(edge.toClient(new ConnectEsError("late", ConnectEsCode.Canceled), method).metadata.get(REASON_HEADER)).toBe("CANCELLED");
    const bug = edge.toClient(new TypeError("x is undefined"), method);
    expect([bug.code, bug.metadata.get(REASON_HEADER), infos(bug)[0]!.reason]).toEqual([Code.Internal, "INTERNAL", "INTERNAL"]);
  });

  it("replaces a reason ErrorInfo does not allow with the code's name, and bounds the metadata", () => {
    const odd = withReason(new ConnectError("no", Code.PermissionDenied), "not a reason!", { note: "x".repeat(5000) });
    const sent = edge.toClient(odd, method);
    expect(sent.metadata.get(REASON_HEADER)).toBe("PERMISSION_DENIED");
    expect(infos(sent)[0]!.metadata.note!.length).toBeLessThan(600);
    expect(reasonOf(sent).reason).toBe("PERMISSION_DENIED");
  });

  it("clips a long message but keeps the reason", () => {
    const sent = edge.toClient(notFound("session", "s".repeat(4000)), method);
    expect(sent.rawMessage.length).toBeLessThan(1100);
    expect(sent.metadata.get(REASON_HEADER)).toBe("SESSION_NOT_FOUND");
  });

  it("encodes the status with its ErrorInfo as grpc-status-details-bin carries it (google.rpc.Status)", () => {
    const sent = edge.toClient(withReason(new ConnectError("stale", Code.Aborted), ErrorReason.STALE_VERSION, { current_version: "4" }), method);
    const status = fromBinary(StatusSchema, statusDetails(sent));
    expect([status.code, status.message]).toEqual([Code.Aborted, "stale"]);
    expect(status.details.map((d) => d.typeUrl)).toEqual(["type.googleapis.com/google.rpc.ErrorInfo"]);
    const info = anyUnpack(status.details[0]!, ErrorInfoSchema)!;
    expect([info.reason, info.domain, info.metadata]).toEqual(["STALE_VERSION", "qingyu.dev", { current_version: "4" }]);
  });

  it("sentReason is what a batch item's error carries", () => {
    expect(sentReason(notFound("agent", "nope"))).toEqual({ reason: "AGENT_NOT_FOUND", metadata: { agent_id: "nope" } });
  });
});
