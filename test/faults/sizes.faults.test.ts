// Oversized requests with the server on its default limits (maxMessageBytes 4 MiB), on the
// gRPC port (framed by hand over node:http2) and the Connect port (unary JSON and binary,
// and the Connect streaming envelope over HTTP/1.1): a 10 MB message, a gzip body that
// inflates to 100 MB, and a length prefix declaring 4 GiB sent with a few bytes (or a
// 10 MB prefix) on a request that stays open. Each must be refused with
// RESOURCE_EXHAUSTED without waiting for the rest of the body, the server's peak RSS must
// grow by far less than the message (VmHWM, reset before each case), and the next call works.
import * as grpc from "@grpc/grpc-js";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { crashLines, expectServing, grpcFrame } from "./support.ts";

const MB = 1_000_000;
const FOUR_GIB = 0xffffffff;
const EXECUTE = "qingyu.agent.v1.AgentService/Execute";
const STREAM = "qingyu.agent.v1.AgentService/ExecuteStream";

function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n > 127; n = Math.floor(n / 128)) out.push((n % 128) | 128);
  out.push(n);
  return Buffer.from(out);
}
// An ExecuteRequest (and ExecuteStreamRequest: same fields) for agent "echo" whose task is
// `size` bytes of `fill`, built without a JS string of that size. Small ones are served
// (the control case), so only the size is what gets refused.
const proto = (size: number, fill = "x") =>
  Buffer.concat([Buffer.from([0x0a, 4]), Buffer.from("echo"), Buffer.from([0x12]), varint(size), Buffer.alloc(size, fill)]);
const json = (size: number, fill = "x") => Buffer.concat([Buffer.from('{"agentId":"echo","task":"'), Buffer.alloc(size, fill), Buffer.from('"}')]);
// 100 MB of one byte compresses ~1000:1: a ~100 KB body.
const bombs = { proto: gzipSync(proto(100 * MB, "z")), json: gzipSync(json(100 * MB, "z")) };

/** What a client saw: the status (gRPC name), HTTP status on the Connect port, and when it came. */
interface Outcome {
  code: string;
  message: string;
  httpStatus?: number;
  ms: number;
}

/** One gRPC call on a fresh connection; `end: false` leaves the request stream open. */
async function overGrpc(port: number, method: string, body: Buffer, headers: http2.OutgoingHttpHeaders, end: boolean): Promise<Outcome> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined);
  await new Promise((r) => session.once("connect", r));
  try {
    return await new Promise<Outcome>((resolve) => {
      const started = performance.now();
      const done = (code: string, message = "") => {
        clearTimeout(timer);
        resolve({ code, message, ms: performance.now() - started });
      };
      const timer = setTimeout(() => done("no answer within 10 s"), 10_000);
      const req = session.request({ ":method": "POST", ":path": `/${method}`, "content-type": "application/grpc", te: "trailers", ...headers });
      const status = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) done(grpc.status[Number(h["grpc-status"])]!, decodeURIComponent(String(h["grpc-message"] ?? "")));
      };
      req.on("response", status);
      req.on("trailers", status);
      req.on("data", () => undefined);
      req.on("error", () => undefined);
      req.on("close", () => done(`closed without a status (RST_STREAM ${req.rstCode})`));
      if (end) req.end(body);
      else req.write(body);
    });
  } finally {
    session.destroy();
  }
}

/**
 * One Connect call over HTTP/1.1 on a fresh connection; `end: false` leaves the request
 * body open. Unary: the JSON error's code; streaming: the end-stream envelope's.
 */
function overConnect(port: number, method: string, body: Buffer, headers: http.OutgoingHttpHeaders, end: boolean): Promise<Outcome> {
  // Keep-alive, as fetch and Connect clients do: with "Connection: close" Node's server closes
  // the socket right after its early answer, and a client still writing the body gets EPIPE.
  const agent = new http.Agent({ keepAlive: true });
  return new Promise<Outcome>((resolve) => {
    const started = performance.now();
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: `/${method}`, headers, agent });
    const done = (code: string, message: string, httpStatus?: number) => {
      clearTimeout(timer);
      req.destroy();
      agent.destroy();
      resolve({ code, message, httpStatus, ms: performance.now() - started });
    };
    const timer = setTimeout(() => done("no answer within 10 s", ""), 10_000);
    req.on("error", (err) => done(`request error ${err.message}`, ""));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", () => undefined);
      res.on("end", () => {
        const all = Buffer.concat(chunks);
        let text = all;
        // Streaming: envelopes; the one flagged 2 is the end-stream JSON.
        const enveloped = String(res.headers["content-type"]).startsWith("application/connect+");
        for (let at = 0, next = 0; enveloped && at + 5 <= all.length; at = next) {
          next = at + 5 + all.readUInt32BE(at + 1);
          if (all[at] === 2) text = all.subarray(at + 5, next);
        }
        let error: { code?: string; message?: string } = {};
        try {
          const parsed = JSON.parse(text.toString());
          error = parsed.error ?? parsed;
        } catch {
          // not JSON: a success body
        }
        done(error.code ? error.code.toUpperCase() : res.statusCode === 200 ? "OK" : `HTTP ${res.statusCode}`, error.message ?? "", res.statusCode);
      });
    });
    if (end) req.end(body);
    else req.write(body);
  });
}

/** Resident and peak resident set size of a process, in MiB (Linux /proc). */
function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)![1]);
  return { rss: kib("VmRSS") / 1024, hwm: kib("VmHWM") / 1024 };
}

const gzipHeader = { grpc: { "grpc-encoding": "gzip" }, unary: { "content-encoding": "gzip" }, stream: { "connect-content-encoding": "gzip" } };
type Port = "grpc" | "json" | "proto" | "stream";
const contentType = { json: "application/json", proto: "application/proto", stream: "application/connect+proto" };

/**
 * The request of one case on one port. `declared` lies about the length in the length
 * prefix (gRPC, Connect streaming) or Content-Length (Connect unary); `open` leaves it unended.
 */
function send(server: ServerProcess, port: Port, body: Buffer, opts: { gzip?: boolean; declared?: number; open?: boolean; chunked?: boolean } = {}) {
  const { gzip = false, open = false } = opts;
  if (port === "grpc") {
    return overGrpc(server.grpcPort, EXECUTE, grpcFrame(body, gzip ? 1 : 0, opts.declared ?? body.length), gzip ? gzipHeader.grpc : {}, !open);
  }
  if (port === "stream") {
    const headers = { "content-type": contentType.stream, ...(gzip ? gzipHeader.stream : {}) };
    return overConnect(server.httpPort, STREAM, grpcFrame(body, gzip ? 1 : 0, opts.declared ?? body.length), headers, !open);
  }
  const length = opts.chunked ? {} : { "content-length": String(opts.declared ?? body.length) };
  return overConnect(server.httpPort, EXECUTE, body, { "content-type": contentType[port], ...length, ...(gzip ? gzipHeader.unary : {}) }, !open);
}

const message = (port: Port, size: number, fill?: string) => (port === "json" ? json(size, fill) : proto(size, fill));
const bomb = (port: Port) => (port === "json" ? bombs.json : bombs.proto);

describe(`oversized messages on the default limits (server on ${runtime})`, () => {
  let server: ServerProcess;
  let pid: number;
  const measured: string[] = [];

  beforeAll(async () => {
    server = await startServer({ log: { level: "warn" }, agents: [{ id: "echo", provider: "echo", model: "echo-1" }], plugins: { dirs: [] } });
    pid = server.child.pid!;
  });
  afterAll(async () => {
    console.log(`oversized messages, server on ${runtime}:\n${measured.join("\n")}`);
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
  });

  /** Runs one case: its outcome, and how far the server's peak RSS rose above its RSS before. */
  async function measure(name: string, run: () => Promise<Outcome>): Promise<Outcome & { growth: number }> {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak read
    // afterwards is this case's. If refused, VmHWM is the process's peak so far: a bound still.
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, "5");
    } catch {
      // the peak since start: over-estimates, never under-estimates
    }
    const before = memory(pid).rss;
    const outcome = await run();
    // Let the server finish what the client's request left it (discarding the body) before reading the peak.
    await new Promise((r) => setTimeout(r, 200));
    const growth = memory(pid).hwm - before;
    measured.push(`  ${name}: ${outcome.code} in ${outcome.ms.toFixed(0)} ms, peak RSS +${growth.toFixed(1)} MiB`);
    return { ...outcome, growth };
  }

  const ports: Port[] = ["grpc", "json", "proto", "stream"];

  it.each(ports)("%s (control): the same framing is served with a small message, plain and gzip, and passes the size limit just under it", async (port) => {
    for (const gzip of [false, true]) {
      const body = message(port, 1000);
      const outcome = await send(server, port, gzip ? gzipSync(body) : body, { gzip });
      expect(outcome, JSON.stringify(outcome)).toMatchObject({ code: "OK" });
    }
    // 3.9 MB: read whole and parsed, then refused by the validation plugin (task over 64 KiB).
    // Its peak RSS growth shows what reading a message costs on this meter.
    const near = await measure(`${port}, 3.9 MB message (under the limit, read whole)`, () => send(server, port, message(port, 3_900_000)));
    expect(near.code, near.message).toBe("INVALID_ARGUMENT");
    // The stream port reads the message with one copy (the preflight's buffer is what connect-node
    // decodes) and runs after three controls whose freed pages it reuses unseen: +1.8-1.9 MiB there.
    expect(near.growth, near.message).toBeGreaterThan(port === "stream" ? 1.5 : 3);
  });

  /** The refusal every case expects: RESOURCE_EXHAUSTED naming the 4 MiB limit (429 on Connect unary), in time, memory bounded. */
  function expectRefused(port: Port, outcome: Outcome & { growth: number }, maxGrowthMiB: number) {
    expect(outcome.code, outcome.message).toBe("RESOURCE_EXHAUSTED");
    expect(outcome.message).toContain("4194304");
    if (port === "json" || port === "proto") expect(outcome.httpStatus).toBe(429);
    // Loopback and a refusal at the length prefix take milliseconds; 1 s leaves room for a loaded VM.
    expect(outcome.ms).toBeLessThan(1000);
    expect(outcome.growth).toBeLessThan(maxGrowthMiB);
  }
  // Holding a 10 MB message takes at least 9.5 MiB; the controls show reading 3.9 MB whole costs
  // 8-23 MiB on this meter. (RSS counts new pages only: memory an earlier case freed can be
  // reused unseen, so this bound is evidence; the left-open cases below prove no waiting.)
  // Refusals usually peak at +3-7 MiB; CI runs on a loaded machine saw +9.1 and +9.50 MiB for
  // a Connect binary body (Node discarding the unread body in socket-sized chunks after the
  // refusal went out), so the bound is what holding the whole message would take, not a margin below it.
  // Exactly the message's own size (10,000,000 bytes = 9.537 MiB): a refusal that held it would reach it.
  const BELOW_10MB = (10 * MB) / 2 ** 20;

  it.each(ports)("%s: a 10 MB message is RESOURCE_EXHAUSTED, memory bounded, the next call works", async (port) => {
    expectRefused(port, await measure(`${port}, 10 MB message`, () => send(server, port, message(port, 10 * MB))), BELOW_10MB);
    await expectServing(server);
  });

  it.each(["json", "proto"] as Port[])("%s without Content-Length (chunked): a 10 MB message is refused once the limit is passed", async (port) => {
    // No length to refuse up front: connect-node reads up to 4 MiB, holds it, then refuses.
    expectRefused(port, await measure(`${port}, 10 MB message, chunked`, () => send(server, port, message(port, 10 * MB), { chunked: true })), 12);
    await expectServing(server);
  });

  it.each(ports)("%s: a gzip body that inflates to 100 MB is RESOURCE_EXHAUSTED without inflating it all", async (port) => {
    expect(bomb(port).length).toBeLessThan(MB);
    const outcome = await measure(`${port}, gzip inflating to 100 MB (${(bomb(port).length / 1024).toFixed(0)} KiB sent)`, () =>
      send(server, port, bomb(port), { gzip: true }),
    );
    // Inflating it all would take 95 MiB or more; the limit stops inflation at 4 MiB.
    expectRefused(port, outcome, 32);
    await expectServing(server);
  });

  it.each(ports)("%s: a length declaring 4 GiB with a few bytes, request left open, is refused without waiting for the body", async (port) => {
    // The body never comes: an answer at all shows the server did not wait for it.
    expectRefused(
      port,
      await measure(`${port}, 4 GiB declared, a few bytes sent, left open`, () => send(server, port, message(port, 3), { declared: FOUR_GIB, open: true })),
      BELOW_10MB,
    );
    await expectServing(server);
  });

  it.each(ports)("%s: a length declaring 4 GiB followed by a 10 MB prefix, request left open, is refused", async (port) => {
    expectRefused(
      port,
      await measure(`${port}, 4 GiB declared, 10 MB sent, left open`, () => send(server, port, message(port, 10 * MB), { declared: FOUR_GIB, open: true })),
      BELOW_10MB,
    );
    await expectServing(server);
  });
});
