// `qingyu health`: one grpc.health.v1.Health/Check over HTTP/2, for container
// health checks. Plain JavaScript on node:http2 (types in health-probe.d.mts):
// a probe runs every few seconds, so it loads neither TypeScript, nor the
// server, nor a gRPC library (about 0.1 s CPU and 47 MB, against 2.2 s and
// 166 MB when it loaded the server). The request is one optional string field
// and the answer one enum, so both are encoded here by hand.
import { connect } from "node:http2";
import { parseArgs } from "node:util";
import { AddressError, serverAddress } from "./server-address.mjs";

/** HealthCheckResponse.ServingStatus names, by number. */
const SERVING_STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

const GRPC_CODES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** A HealthCheckRequest (field 1, `service`, a string) in a gRPC frame: flag 0, 4-byte length, message. */
function requestFrame(service) {
  const name = Buffer.from(service, "utf8");
  const message = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

function varint(n) {
  const bytes = [];
  for (; n > 0x7f; n >>>= 7) bytes.push((n & 0x7f) | 0x80);
  bytes.push(n);
  return Buffer.from(bytes);
}

/** The `status` (field 1, a varint) of a HealthCheckResponse in a gRPC frame; 0 (UNKNOWN) when absent. */
function servingStatus(frame) {
  const message = frame.subarray(5, 5 + (frame.length >= 5 ? frame.readUInt32BE(1) : 0));
  for (let i = 0; i < message.length;) {
    const tag = message[i++];
    let value = 0;
    for (let shift = 0; i < message.length; shift += 7) {
      const byte = message[i++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) break;
    }
    if (tag === 0x08) return value;
    // The answer has no other field today; a length-delimited one would be skipped.
    if ((tag & 7) === 2) i += value;
  }
  return 0;
}

// The connection's own failure (ECONNREFUSED), not the stream cancel it caused.
function unreachable(address, err) {
  let cause = err;
  while (cause?.cause) cause = cause.cause;
  const code = cause?.code;
  // An HTTP/2 failure (the other end is no gRPC port) says little by its code alone.
  const said =
    code && String(code).startsWith("ERR_HTTP2") ? `${code} (${cause.message}): is it the server's gRPC port?` : (code ?? cause?.message ?? String(cause));
  return new Error(`cannot reach ${address}: ${said}`);
}

/** Asks the server at `address` (HOST:PORT, plaintext) for `service`'s health; `serving` is true for SERVING. */
export function checkHealth(address, service = "", timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const session = connect(`http://${address}`);
    let settled = false;
    const settle = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => settle(new Error(`no answer from ${address} within ${timeoutMs} ms`)), timeoutMs);
    session.on("error", (err) => settle(unreachable(address, err)));
    const stream = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Check",
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": `${timeoutMs}m`,
    });
    const chunks = [];
    let headers = {};
    let trailers = {};
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk) => chunks.push(chunk));
    stream.on("error", (err) => settle(unreachable(address, err)));
    stream.on("end", () => {
      if (headers[":status"] !== 200) return settle(new Error(`${address} is not a gRPC port (HTTP ${headers[":status"]})`));
      // A trailers-only answer (an error) carries grpc-status in its headers.
      const code = Number(trailers["grpc-status"] ?? headers["grpc-status"]);
      if (code !== 0) {
        const said = trailers["grpc-message"] ?? headers["grpc-message"];
        return settle(new Error(`${GRPC_CODES[code] ?? `status ${code}`}${said ? `: ${decodeURIComponent(said)}` : ""}`));
      }
      const status = servingStatus(Buffer.concat(chunks));
      settle(undefined, { serving: status === 1, status: SERVING_STATUS[status] ?? String(status) });
    });
    stream.end(requestFrame(service));
  });
}

/**
 * The command: prints the status and returns the exit status (0 SERVING, 1
 * otherwise or unreachable, 2 for bad arguments). `--help` is the full CLI's.
 */
export async function runHealth(args, env, out = process.stdout, err = process.stderr) {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { config: { type: "string" }, address: { type: "string" } }, strict: true, allowPositionals: false }));
  } catch (e) {
    err.write(`qingyu: ${e.message} (see qingyu health --help)\n`);
    return 2;
  }
  let address = values.address;
  try {
    address ??= await serverAddress(values.config, env);
  } catch (e) {
    if (!(e instanceof AddressError)) throw e;
    err.write(`qingyu: ${e.message}\n`);
    return 2;
  }
  try {
    const { serving, status } = await checkHealth(address);
    out.write(`${status}\n`);
    return serving ? 0 : 1;
  } catch (e) {
    err.write(`qingyu: health check failed: ${e.message}\n`);
    return 1;
  }
}
