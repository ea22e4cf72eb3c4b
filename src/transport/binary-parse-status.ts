import { Code, ConnectError } from "@qingyu/plugin-api";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { COMPRESSED, END_STREAM, envelope, GRPC_WEB_TRAILER, wrapHandlers } from "./universal-handlers.ts";

// connect-es reports a request body it cannot decode as protobuf with this message prefix and
// the code INTERNAL (the same decoder serves its clients, where such a body is the server's
// fault). Here the body is the caller's: INVALID_ARGUMENT, as on the gRPC port (docs/architecture.md,
// "Execute over Connect"; the README's status codes).
const PREFIX = "parse binary:";
const GRPC_INTERNAL = "13";
const GRPC_INVALID_ARGUMENT = "3";

/**
 * Wraps the HTTP port's handlers so that a binary request body that is not the
 * method's message gets INVALID_ARGUMENT instead of connect-es's INTERNAL, in
 * every protocol it speaks: Connect unary (HTTP 400 + JSON error) and streaming
 * (end-of-stream message), gRPC-Web (trailer frame) and gRPC (trailers). Only a
 * request with a binary body is looked at; a JSON body already gets INVALID_ARGUMENT.
 */
export function reportBinaryParseErrorsAsInvalid(handlers: UniversalHandler[]): void {
  wrapHandlers(handlers, (inner) => async (req) => {
    const res = await inner(req);
    // A JSON body's parse errors are already INVALID_ARGUMENT.
    return /json/i.test(req.header.get("content-type") ?? "") ? res : rewrite(res, inner.method.input.typeName);
  });
}

/** The gRPC port's words for a body that does not decode as `typeName`, given connect-es's parse error message. */
function invalidMessage(typeName: string, message: string): string {
  return `request: is not a valid ${typeName} message (${message.slice(PREFIX.length).trim()})`;
}

/**
 * For code that decodes a binary request itself (framed-calls.ts): connect-es's
 * parse error as INVALID_ARGUMENT in the gRPC port's words; any other error as it is.
 */
export function binaryParseError(err: unknown, typeName: string): unknown {
  if (!(err instanceof ConnectError) || err.code !== Code.Internal || !err.rawMessage.startsWith(PREFIX)) return err;
  return new ConnectError(invalidMessage(typeName, err.rawMessage), Code.InvalidArgument);
}

async function rewrite(res: UniversalServerResponse, typeName: string): Promise<UniversalServerResponse> {
  // The gRPC port's words for the same bytes.
  const say = (message: string) => invalidMessage(typeName, message);
  const type = res.header?.get("content-type") ?? "";
  // Connect unary: the error is the whole (uncompressed) JSON body of a 500.
  if (res.status === 500 && type.startsWith("application/json") && !res.header?.has("content-encoding") && res.body) {
    return rewriteUnary(res, res.body, say);
  }
  if (res.status !== 200 || !res.body) return res;
  // The parse error is the first and only thing a streaming answer says.
  if (type.startsWith("application/connect+")) return { ...res, body: rewriteFirst(res.body, (chunk) => connectEndStream(chunk, say)) };
  if (type.startsWith("application/grpc-web")) return { ...res, body: rewriteFirst(res.body, (chunk) => grpcWebTrailer(chunk, say)) };
  if (type.startsWith("application/grpc")) {
    // gRPC: a trailers-only answer carries the status in its headers; otherwise trailers follow the body.
    if (res.header) grpcStatus(res.header, say);
    return { ...res, body: afterBody(res.body, () => res.trailer && grpcStatus(res.trailer, say)) };
  }
  return res;
}

/** Words a connect-es parse error as the gRPC port would. */
type Say = (message: string) => string;

/** Reads the error body before the status goes out: the rewrite changes both. */
async function rewriteUnary(res: UniversalServerResponse, body: AsyncIterable<Uint8Array>, say: Say): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  const fixed = invalidArgumentJson(bytes, say);
  if (!fixed) return { ...res, body: once(bytes) };
  res.header?.set("content-length", String(fixed.byteLength));
  return { ...res, status: 400, body: once(fixed) };
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** The Connect error JSON rewritten to invalid_argument, or undefined when it is not a parse error. */
function invalidArgumentJson(bytes: Uint8Array, say: Say, wrapped = false): Uint8Array | undefined {
  let json: { code?: unknown; message?: unknown; error?: { code?: unknown; message?: unknown } };
  try {
    json = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    return undefined;
  }
  const error = wrapped ? json.error : json;
  if (!error || error.code !== "internal" || typeof error.message !== "string" || !error.message.startsWith(PREFIX)) return undefined;
  error.code = "invalid_argument";
  error.message = say(error.message);
  return Buffer.from(JSON.stringify(json));
}

async function* rewriteFirst(body: AsyncIterable<Uint8Array>, fix: (chunk: Uint8Array) => Uint8Array | undefined): AsyncIterable<Uint8Array> {
  let first = true;
  for await (const chunk of body) {
    yield (first && fix(chunk)) || chunk;
    first = false;
  }
}

/** A Connect end-of-stream envelope with a parse error, rewritten. */
function connectEndStream(chunk: Uint8Array, say: Say): Uint8Array | undefined {
  if (chunk.length < 5 || !(chunk[0]! & END_STREAM) || chunk[0]! & COMPRESSED) return undefined;
  const fixed = invalidArgumentJson(chunk.subarray(5), say, true);
  return fixed && envelope(chunk[0]!, fixed);
}

/** A gRPC-Web trailer frame with a parse error, rewritten. */
function grpcWebTrailer(chunk: Uint8Array, say: Say): Uint8Array | undefined {
  if (chunk.length < 5 || chunk[0] !== GRPC_WEB_TRAILER) return undefined;
  const trailers = new Headers();
  for (const line of Buffer.from(chunk.subarray(5)).toString("latin1").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  if (!grpcStatus(trailers, say)) return undefined;
  let text = "";
  trailers.forEach((value, name) => void (text += `${name}: ${value}\r\n`));
  return envelope(GRPC_WEB_TRAILER, Buffer.from(text, "latin1"));
}

/** Rewrites a gRPC status held in these headers, if it is a parse error; says whether it did. */
function grpcStatus(headers: Headers, say: Say): boolean {
  if (headers.get("grpc-status") !== GRPC_INTERNAL) return false;
  const message = decodeURIComponent(headers.get("grpc-message") ?? "");
  if (!message.startsWith(PREFIX)) return false;
  headers.set("grpc-status", GRPC_INVALID_ARGUMENT);
  headers.set("grpc-message", encodeURIComponent(say(message)));
  return true;
}

async function* afterBody(body: AsyncIterable<Uint8Array>, then: () => void): AsyncIterable<Uint8Array> {
  yield* body;
  then();
}
