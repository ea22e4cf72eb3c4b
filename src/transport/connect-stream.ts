// Connect's streaming protocol for server-streaming methods on the HTTP port,
// served by our own code for the common case: an uncompressed request (the
// default of every Connect client). connect-node's pipeline of async generators
// cost ~180 µs of CPU per ExecuteStream call of 20 messages in its own code
// (bench:profile openai-connect-stream: 1,063 µs a call, against 495 µs for
// the same call on the gRPC port and 574 µs for the event-stream form, which
// already ran here). Anything else (a compressed request, gRPC-Web, unary,
// bidi) is still connect-node's.
import { Code, ConnectError } from "@qingyu/plugin-api";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { createEndStreamSerialization, endStreamFlag } from "@connectrpc/connect/protocol-connect";
import type { HostedService } from "./types.ts";
import type { CallTracker } from "./call-tracker.ts";
import { type NodeRequest, type NodeResponse, type RequestMessage, FramedCalls, type FramedCallOptions, type StreamWriter } from "./framed-calls.ts";
import { ResponseWrites } from "./response-writes.ts";
import { envelope, envelopeLength } from "./universal-handlers.ts";

const CONTENT_TYPE = /^application\/connect\+(json|proto)\s*(;|$)/i;

/** Serves Connect server-streaming calls whose request is not compressed. */
export class ConnectStreams extends FramedCalls {
  protected readonly protocolName = "connect";

  constructor(services: readonly HostedService[], tracker: CallTracker, options: FramedCallOptions) {
    super(services, tracker, options);
  }

  /** Whether this request is one served here (anything else is connect-node's). */
  handles(req: NodeRequest): boolean {
    if (req.method !== "POST" || !CONTENT_TYPE.test(req.headers["content-type"] ?? "")) return false;
    const encoding = req.headers["connect-content-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    return this.serves(req.url);
  }

  protected writer(req: NodeRequest, res: NodeResponse): StreamWriter {
    return new ConnectStreamWriter(res, isBinary(req.headers["content-type"]) ? "application/connect+proto" : "application/connect+json");
  }

  protected async readRequest(ureq: UniversalServerRequest, max: number): Promise<RequestMessage> {
    return { bytes: await readEnvelope(ureq.body as AsyncIterable<Uint8Array>, max), binary: isBinary(ureq.header.get("content-type")) };
  }
}

/** Whether a content type this form takes (CONTENT_TYPE) is protobuf, not JSON. */
function isBinary(contentType: string | null | undefined): boolean {
  return CONTENT_TYPE.exec(contentType ?? "")?.[1]?.toLowerCase() === "proto";
}

/**
 * The one message of a server-streaming request: a flags byte, a 4-byte
 * length, the message. One that declares more than `max` bytes is refused as
 * soon as its length is in, body or not, in connect-node's words.
 */
async function readEnvelope(body: AsyncIterable<Uint8Array>, max: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let declared: number | undefined;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (declared === undefined && size >= 5) {
      declared = envelopeLength(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      if (declared > max) throw new ConnectError(`message size ${declared} is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted);
    }
    if (size > max + 5) throw new ConnectError(`message size is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted);
  }
  const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  if (size === 0) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.InvalidArgument);
  if (size < 5 || size < 5 + declared!) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if (size > 5 + declared!) {
    // As connect-node words it: a second whole envelope is an extra message; bytes that do not make one are a cut envelope.
    const rest = whole.subarray(5 + declared!);
    const extra = rest.byteLength >= 5 && rest.byteLength >= 5 + envelopeLength(rest);
    throw new ConnectError(
      extra ? "protocol error: received extra input message for server-streaming method" : "protocol error: incomplete envelope",
      Code.InvalidArgument,
    );
  }
  const flags = whole[0]!;
  if (flags !== 0) {
    throw new ConnectError(
      flags & 1 ? "protocol error: received compressed message without connect-content-encoding" : `protocol error: unexpected envelope flags ${flags}`,
      Code.InvalidArgument,
    );
  }
  return whole.subarray(5);
}

const endStream = createEndStreamSerialization(undefined);

/**
 * Writes one call's Connect stream: HTTP 200, a 5-byte envelope per message,
 * then the end-of-stream message (flag 2) with the error, if any, and the
 * trailers. The status and headers go with the first bytes.
 */
class ConnectStreamWriter implements StreamWriter {
  private readonly writes: ResponseWrites;
  private ended = false;
  failure: ConnectError | undefined;

  constructor(
    private readonly res: NodeResponse,
    private readonly contentType: string,
  ) {
    this.writes = new ResponseWrites(res);
  }

  message(_value: unknown, bytes: Uint8Array): boolean {
    return this.write(envelope(0, bytes));
  }

  drained(signal: AbortSignal): Promise<void> {
    return this.writes.drained(signal);
  }

  error(error: ConnectError): void {
    this.failure = error;
  }

  end(trailers: Headers): void {
    if (this.ended) return;
    this.ended = true;
    if (this.writes.gone) return;
    // Ours is shaped like connect-es's ConnectError (plugin-api/errors.ts), which is all the serializer reads.
    const error = this.failure as Parameters<typeof endStream.serialize>[0]["error"];
    this.write(envelope(endStreamFlag, endStream.serialize({ metadata: trailers, error })));
    this.res.end();
  }

  private write(bytes: Uint8Array): boolean {
    if (!this.res.headersSent && !this.writes.gone) this.res.writeHead(200, { "content-type": this.contentType });
    return this.writes.write(bytes);
  }
}
