// A streaming call that ends while its client does not read (it stopped taking
// DATA at the HTTP/2 level, or stopped reading its socket) cannot tell the client:
// the status trailers (gRPC) or end-of-stream message (Connect) are queued behind
// DATA the client never takes, and the stream with everything it buffers would
// live as long as the connection. After a grace the stream is reset instead
// (RST_STREAM; on HTTP/1.1, where there is no such frame, the connection, with a TCP reset).
import { Code } from "@qingyu/plugin-api";
import { createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
// Not re-exported by the package index: the part every kind of server call shares.
import type { ServerSurfaceCall } from "@grpc/grpc-js/build/src/server-call.js";
import type { IncomingMessage } from "node:http";
import { constants, type Http2ServerRequest, type Http2Stream } from "node:http2";

/** What connect-node's adapter is called with on either HTTP version. */
type NodeServerRequest = IncomingMessage | Http2ServerRequest;

/** How long an ended streaming call waits for its client to read up to the status before its stream is reset. */
const STALLED_END_GRACE_MS = 3000;

/**
 * The RST_STREAM code for a call that ended with `code`: ENHANCE_YOUR_CALM, which
 * gRPC and Connect clients report as RESOURCE_EXHAUSTED, when that is what it was;
 * CANCEL (CANCELLED) otherwise.
 */
function resetCode(code: Code | undefined): number {
  return code === Code.ResourceExhausted ? constants.NGHTTP2_ENHANCE_YOUR_CALM : constants.NGHTTP2_CANCEL;
}

/**
 * Arms the reset of a grpc-js streaming call that has just been given its error
 * status: unless grpc-js reports the call over (it does once the trailers are
 * out, or the stream closed) within the grace, its HTTP/2 stream is reset.
 */
export function resetGrpcWhenStalled(call: ServerSurfaceCall, code: Code | undefined): void {
  if (call.cancelled) return;
  const done = () => clearTimeout(timer);
  const timer = setTimeout(() => {
    call.removeListener("cancelled", done);
    const stream = grpcHttp2Stream(call);
    if (stream && !stream.destroyed) stream.close(resetCode(code));
  }, STALLED_END_GRACE_MS);
  timer.unref();
  call.once("cancelled", done);
}

/**
 * The HTTP/2 stream under a grpc-js server call. grpc-js (1.14) has no public
 * way to it: the call object holds its intercepting call (`call`), interceptors
 * chain through `nextCall`, and the innermost one holds `stream`. The fault
 * suite (test/faults/subscribers.faults.test.ts) fails if this stops finding it.
 */
function grpcHttp2Stream(call: object): Http2Stream | undefined {
  let inner = (call as { call?: unknown }).call;
  for (let depth = 0; inner && typeof inner === "object" && depth < 16; depth++) {
    const stream = (inner as { stream?: unknown }).stream;
    if (stream && typeof (stream as Http2Stream).close === "function" && "rstCode" in (stream as object)) return stream as Http2Stream;
    inner = (inner as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/** Where the Connect port keeps each call's Node request, for resetting it (connect-node's HandlerContext does not expose it). */
const nodeRequestKey = createContextKey<NodeServerRequest | undefined>(undefined, { description: "the Node.js request" });

/** connectNodeAdapter's `contextValues`: carries the Node request to the handlers. */
export function nodeRequestValues(req: NodeServerRequest) {
  return createContextValues().set(nodeRequestKey, req);
}

/**
 * Arms the reset of a connect-node streaming call once `signal` aborts (the
 * service failed it, its deadline passed, shutdown): connect-node then waits on
 * a write that a client that does not read never lets finish, and never resumes
 * the handler to let it end. If the handler has not finished (`disarm`) within
 * the grace, the stream is reset (or the HTTP/1.1 connection closed) and
 * `onReset` runs: the handler's own cleanup would never run.
 */
export function resetConnectWhenStalled(hctx: HandlerContext, signal: AbortSignal, onReset: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => {
      const req = hctx.values.get(nodeRequestKey);
      const reason: unknown = signal.reason;
      if (req && "stream" in req) {
        if (!req.stream.destroyed) req.stream.close(resetCode((reason as { code?: Code } | undefined)?.code));
      } else if (req?.socket) {
        // A TCP reset: a plain close would leave the unsent data (megabytes) in the kernel until the peer reads or times out.
        const socket = req.socket;
        if (typeof socket.resetAndDestroy === "function") socket.resetAndDestroy();
        else socket.destroy();
      }
      onReset();
    }, STALLED_END_GRACE_MS);
    timer.unref();
  };
  if (signal.aborted) arm();
  else signal.addEventListener("abort", arm, { once: true });
  return () => {
    signal.removeEventListener("abort", arm);
    clearTimeout(timer);
  };
}
