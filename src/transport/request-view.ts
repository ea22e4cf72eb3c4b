import { Code, ConnectError } from "@qingyu/plugin-api";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import type { NodeRequest, NodeResponse } from "./framed-calls.ts";
import { nodeRequestValues } from "./stalled-stream.ts";

// One reason for every client that leaves: beginCall and whyEnded read only whether it is a deadline's.
const CLIENT_GONE = new ConnectError("the client closed the request", Code.Canceled);

/**
 * A Node request as connect's UniversalServerRequest, for the calls framed by
 * our own code (framed-calls.ts). It is connect-node's
 * universalRequestFromNodeRequest less one cost: that one aborts its signal
 * when every response closes, finished or not, and an abort without a reason
 * makes a DOMException with its stack (~6 µs of a Connect unary call under
 * bench:profile -- openai-connect-unary). Here the signal aborts only when the
 * connection closes before the response has finished: the client went away.
 */
export function requestView(req: NodeRequest, res: NodeResponse): UniversalServerRequest {
  const controller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) controller.abort(CLIENT_GONE);
  });
  const encrypted = "encrypted" in req.socket && req.socket.encrypted;
  const authority = ("authority" in req ? req.authority : undefined) ?? req.headers.host ?? "localhost";
  return {
    httpVersion: req.httpVersion,
    method: req.method ?? "",
    url: new URL(req.url ?? "", `${encrypted ? "https" : "http"}://${authority}`).toString(),
    header: webHeaders(req.headers),
    // The request is an async iterable of its body's chunks, failing as the connection does.
    body: req as AsyncIterable<Uint8Array>,
    signal: controller.signal,
    contextValues: nodeRequestValues(req),
  };
}

/** Node's header object as fetch's Headers, without HTTP/2's pseudo-headers. */
function webHeaders(headers: NodeRequest["headers"]): Headers {
  const out = new Headers();
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || name.charCodeAt(0) === 58 /* : */) continue;
    if (typeof value === "string") out.append(name, value);
    else for (const v of value) out.append(name, v);
  }
  return out;
}
