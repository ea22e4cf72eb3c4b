// Connect's unary protocol on the HTTP port (Connect JSON, what curl and fetch
// send), served by our own code for the common case: a POST whose body is not
// compressed. Under connect-node's handler, bench:profile -- openai-connect-unary
// spent 402 µs a call against 205 on the gRPC port for the same call: its
// pipeline, two aborts without a reason per call (each a DOMException with its
// stack, ~20 µs), and a response written in pieces. Anything else (GET, a
// compressed body, gRPC-Web, a content type it does not know) is still
// connect-node's, which also answers its errors.
import type { ConnectError } from "@qingyu/plugin-api";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import type { CallTracker } from "./call-tracker.ts";
import { type FramedCallOptions, FramedCalls, type NodeRequest, type NodeResponse, readBody, type RequestMessage, type StreamWriter } from "./framed-calls.ts";
import type { HostedService } from "./types.ts";

// connect's own test for a unary content type: JSON (with an optional UTF-8 charset) or protobuf.
const CONTENT_TYPE = /^application\/(?:(json)(?:; ?charset=utf-?8)?|(proto))$/i;

/** Serves Connect unary calls whose request is a POST with an uncompressed body. */
export class ConnectUnary extends FramedCalls {
  protected readonly protocolName = "connect";

  constructor(services: readonly HostedService[], tracker: CallTracker, options: FramedCallOptions) {
    super(services, tracker, options, "unary");
  }

  /** Whether this request is one served here (anything else is connect-node's). */
  handles(req: NodeRequest): boolean {
    if (req.method !== "POST" || !CONTENT_TYPE.test(req.headers["content-type"] ?? "")) return false;
    const encoding = req.headers["content-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    return this.serves(req.url);
  }

  protected writer(req: NodeRequest, res: NodeResponse): StreamWriter {
    return new ConnectUnaryWriter(res, isBinary(req.headers["content-type"]));
  }

  protected async readRequest(ureq: UniversalServerRequest, max: number): Promise<RequestMessage> {
    return { bytes: await readBody(ureq, max), binary: isBinary(ureq.header.get("content-type")) };
  }
}

function isBinary(contentType: string | null | undefined): boolean {
  return CONTENT_TYPE.exec(contentType ?? "")?.[2] !== undefined;
}

/**
 * Writes one unary answer as connect-node does: 200 with the message, or the
 * error's HTTP status with its JSON and its metadata as headers; the call's
 * trailers as `trailer-` headers; the whole response in one write.
 */
class ConnectUnaryWriter implements StreamWriter {
  failure: ConnectError | undefined;
  private body: Uint8Array | undefined;
  private ended = false;

  constructor(
    private readonly res: NodeResponse,
    private readonly binary: boolean,
  ) {}

  message(_value: unknown, bytes: Uint8Array): boolean {
    this.body = bytes;
    return true;
  }

  drained(): Promise<void> {
    return Promise.resolve();
  }

  error(error: ConnectError): void {
    this.failure = error;
  }

  end(trailers: Headers): void {
    if (this.ended) return;
    this.ended = true;
    const { res, failure } = this;
    if (res.destroyed || res.writableEnded) return;
    // Built as Node's header object at once, in connect-node's order: the type, the error's
    // metadata, the call's trailers as `trailer-` headers, the length.
    const out: Record<string, string> = {};
    let status = 200;
    let body = this.body ?? new Uint8Array(0);
    if (failure) {
      // Ours is shaped like connect-es's ConnectError (plugin-api/errors.ts), which is all errorToJsonBytes reads.
      status = codeToHttpStatus(failure.code);
      out["content-type"] = "application/json";
      failure.metadata.forEach((value, key) => (out[key] = value));
      body = errorToJsonBytes(failure as unknown as Parameters<typeof errorToJsonBytes>[0], {});
    } else {
      out["content-type"] = this.binary ? "application/proto" : "application/json";
    }
    // Appended, as connect's trailerMux does: a metadata entry of the same name keeps its value first.
    trailers.forEach((value, key) => {
      const name = `trailer-${key}`;
      out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
    });
    out["content-length"] = String(body.byteLength);
    res.writeHead(status, out);
    res.end(body);
  }
}
