import type { DescMessage, DescMethod } from "@bufbuild/protobuf";
import { createContextKey, createContextValues } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import type { CallInfo } from "../executor/context.ts";
import type { ErrorEdge } from "./edge-error.ts";
import { checkJsonMaps } from "./json-map-scan.ts";
import { COMPRESSED, END_STREAM, envelopeLength, GRPC_WEB_TRAILER, wrapHandlers } from "./universal-handlers.ts";
import { checkBinaryMaps, mapPlan, type MapLimits } from "./wire-limits.ts";

/**
 * Runs on a call's headers before its request is decoded: the pipeline's admit
 * hooks (auth), so a caller without credentials costs no body decode. Returns
 * undefined when there is nothing to check (no auth configured, health);
 * a rejection refuses the call with its error.
 */
export type Admit = (call: CallInfo, service: string, method: string) => Promise<unknown> | undefined;

/** What both ports check before decoding a request. */
export interface Preflight {
  admit?: Admit;
  limits: MapLimits & { maxMessageBytes: number };
  /** A refusal leaves through the edge, as the service's own errors do. */
  edge: ErrorEdge;
}

/**
 * The CallInfo the HTTP port's preflight admitted; the connect adapter makes it
 * the call's CallContext, so the admission (memoised per call object) is not
 * run twice.
 */
export const preflightCall = createContextKey<CallInfo | undefined>(undefined, { description: "qingyu preflight call" });

/**
 * Wraps the HTTP port's handlers so that, in every protocol connect-node
 * speaks, a request is admitted on its headers and its maps counted on the
 * wire before connect-node decodes it. Both happen as connect-node reads the
 * body, so a refusal is its ordinary error in that protocol (Connect JSON
 * error, end-of-stream message, gRPC-Web trailer, gRPC trailers).
 */
export function guardRequests(handlers: UniversalHandler[], preflight: Preflight): void {
  wrapHandlers(handlers, (inner) => (req) => {
    if (!isByteStream(req.body)) return inner(req);
    const call: CallInfo = { header: (name) => req.header.get(name) ?? undefined, signal: req.signal };
    const contextValues = req.contextValues ?? createContextValues();
    contextValues.set(preflightCall, call);
    return inner({ ...req, contextValues, body: checkedBody(req, req.body, call, inner.method, preflight) });
  });
}

function isByteStream(body: unknown): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

async function* checkedBody(
  req: UniversalServerRequest,
  body: AsyncIterable<Uint8Array>,
  call: CallInfo,
  method: DescMethod,
  preflight: Preflight,
): AsyncIterable<Uint8Array> {
  // connect-node sends a refusal from here as it is: it leaves through the edge first, as the service's own errors do.
  try {
    await preflight.admit?.(call, method.parent.typeName, method.name);
  } catch (err) {
    throw preflight.edge.toClient(err, method);
  }
  // A request stream is not buffered (it may stay open for the call's life): its messages' maps are counted as decoded.
  if (!mapPlan(method.input) || method.methodKind === "bidi_streaming") return yield* body;
  const iterator = body[Symbol.asyncIterator]();
  // One message and its envelope; a larger body is connect-node's to refuse (readMaxBytes), unread by us.
  const { maxMessageBytes } = preflight.limits;
  const cap = maxMessageBytes + 5;
  const enveloped = ENVELOPED.test(req.header.get("content-type") ?? "");
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    chunks.push(next.value);
    size += next.value.byteLength;
    // An envelope declaring more than the limit is refused by connect-node at once, body or not:
    // waiting here for a body that may never come would hold the call open instead.
    if (size > cap || (enveloped && size >= 5 && envelopeLength(chunks[0]!.byteLength >= 5 ? chunks[0]! : Buffer.concat(chunks)) > maxMessageBytes)) {
      yield* chunks;
      return yield* { [Symbol.asyncIterator]: () => iterator };
    }
  }
  const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  try {
    checkMaps(req.header, whole, method.input, preflight.limits);
  } catch (err) {
    throw preflight.edge.toClient(err, method);
  }
  yield whole;
}

const ENVELOPED = /^application\/(connect|grpc|grpc-web)(\+|$|;)/i;

/** Counts the maps of a buffered request body in whichever framing its content type says. */
function checkMaps(header: Headers, body: Uint8Array, input: DescMessage, limits: Preflight["limits"]): void {
  const type = header.get("content-type") ?? "";
  const check = /json/i.test(type) ? checkJsonMaps : checkBinaryMaps;
  if (/^application\/(json|proto)\b/i.test(type)) {
    // Connect unary: the body is the message, compressed whole when content-encoding says so.
    const message = decompress(header.get("content-encoding"), body, limits.maxMessageBytes);
    if (message) check(input, message, limits);
    return;
  }
  if (!ENVELOPED.test(type)) return;
  const encoding = header.get("connect-content-encoding") ?? header.get("grpc-encoding");
  // Enveloped: a flags byte, a 4-byte length, the message. A request of ours carries one.
  for (let at = 0; at + 5 <= body.length;) {
    const flags = body[at]!;
    const length = envelopeLength(body, at);
    const payload = body.subarray(at + 5, at + 5 + length);
    at += 5 + length;
    if (flags & (GRPC_WEB_TRAILER | END_STREAM)) continue; // trailers / end of stream: not a message
    const message = flags & COMPRESSED ? decompress(encoding, payload, limits.maxMessageBytes) : payload;
    if (message) check(input, message, limits);
  }
}

/** The body decompressed, at most `max` bytes; undefined when it cannot be (connect-node refuses it then). */
function decompress(encoding: string | null, body: Uint8Array, max: number): Uint8Array | undefined {
  try {
    if (!encoding || encoding === "identity") return body;
    if (encoding === "gzip") return gunzipSync(body, { maxOutputLength: max });
    if (encoding === "br") return brotliDecompressSync(body, { maxOutputLength: max });
  } catch {
    // Too large or corrupt: connect-node says so in its own words.
  }
  return undefined;
}
