// The SDK's streamable HTTP transport, watched for one failure it leaves to the
// request timeout: a server that dies (or drops the connection) while a call's
// response stream is open ends that stream without an answer, and the SDK only
// reports "SSE stream disconnected" out of band — the call waits out its whole
// timeout. Here the call gets an error answer as soon as its stream ends unanswered.
import {
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  StreamableHTTPClientTransport,
  type JSONRPCMessage,
  type MessageExtraInfo,
  type RequestId,
  type Transport,
  type TransportSendOptions,
} from "@modelcontextprotocol/client";

/** The JSON-RPC error code of the answer given to a call whose response stream ended unanswered. */
const STREAM_ENDED_CODE = -32099;

/** What the SDK's streamable HTTP send takes beyond the Transport interface's options. */
type HttpSendOptions = Parameters<StreamableHTTPClientTransport["send"]>[1];

/** Streamable HTTP client transport whose calls fail at once when their response stream ends without an answer. */
export class WatchedHttpTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;
  readonly hasPerRequestStream = true;

  readonly #inner: StreamableHTTPClientTransport;
  /** Requests sent and not yet answered (nor cancelled). */
  readonly #open = new Set<RequestId>();

  constructor(url: URL, headers: Readonly<Record<string, string>>) {
    // The SDK's default refuses redirects to another origin, which keeps `headers` (an API key) from leaking.
    this.#inner = new StreamableHTTPClientTransport(url, { requestInit: { headers: { ...headers } } });
    this.#inner.onmessage = (message) => {
      if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
        if (message.id !== undefined) this.#open.delete(message.id);
      }
      this.onmessage?.(message);
    };
    this.#inner.onerror = (error) => this.onerror?.(error);
    this.#inner.onclose = () => this.onclose?.();
  }

  get sessionId(): string | undefined {
    return this.#inner.sessionId;
  }

  setProtocolVersion(version: string): void {
    this.#inner.setProtocolVersion(version);
  }

  start(): Promise<void> {
    return this.#inner.start();
  }

  async close(): Promise<void> {
    this.#open.clear();
    await this.#inner.close();
  }

  /** Ends the session on the server (HTTP DELETE); a server that cannot is no error. */
  async terminateSession(): Promise<void> {
    await this.#inner.terminateSession();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const inner = options as HttpSendOptions;
    if (isJSONRPCNotification(message) && message.method === "notifications/cancelled") {
      // A cancelled call is settled by the SDK already; its stream ending later needs no answer.
      const id = (message.params as { requestId?: RequestId } | undefined)?.requestId;
      if (id !== undefined) this.#open.delete(id);
    }
    if (!isJSONRPCRequest(message)) return this.#inner.send(message, inner);
    const id = message.id;
    this.#open.add(id);
    const onRequestStreamEnd = () => {
      inner?.onRequestStreamEnd?.();
      if (!this.#open.delete(id)) return;
      this.onmessage?.({
        jsonrpc: "2.0",
        id,
        error: { code: STREAM_ENDED_CODE, message: "the server ended the response stream without answering (did it stop?)" },
      });
    };
    try {
      await this.#inner.send(message, { ...inner, onRequestStreamEnd });
    } catch (err) {
      this.#open.delete(id);
      throw err;
    }
  }
}
