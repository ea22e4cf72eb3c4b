import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { errorData, sseEvent, SseWriter } from "../../src/transport/sse-writer.ts";

const utf8 = new TextEncoder();

describe("sseEvent", () => {
  it("frames one event: its name, its id, one data line, a blank line", () => {
    expect(sseEvent("delta", 3, '{"delta":{"text":"hi"}}')).toBe('event: delta\nid: 3\ndata: {"delta":{"text":"hi"}}\n\n');
  });

  it("keeps a line break inside the text on the one data line, escaped as JSON escapes it", () => {
    const data = JSON.stringify({ delta: { text: "two\nlines\r\n" } });
    const frame = sseEvent("delta", 1, data);
    expect(frame.split("\n")).toEqual(["event: delta", "id: 1", `data: ${data}`, "", ""]);
    expect(JSON.parse(frame.split("\n")[2]!.slice("data: ".length))).toEqual({ delta: { text: "two\nlines\r\n" } });
  });
});

describe("errorData", () => {
  it("carries the gRPC code name, the message without its [code] prefix, the reason and its metadata", () => {
    const error = withReason(new ConnectError('agent "x" not found', Code.NotFound), ErrorReason.AGENT_NOT_FOUND, { agent_id: "x" });
    expect(errorData(error)).toEqual({ code: "NOT_FOUND", message: 'agent "x" not found', reason: "AGENT_NOT_FOUND", metadata: { agent_id: "x" } });
  });

  it("names the code as gRPC does (CANCELLED) and gives an error without a reason its code's name", () => {
    expect(errorData(new ConnectError("gone", Code.Canceled))).toMatchObject({ code: "CANCELLED", reason: "CANCELLED" });
    expect(errorData(new ConnectError("no", Code.Unauthenticated))).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
  });
});

describe("SseWriter on a real HTTP response", () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  /** Serves one response written by `write`, and returns what a client received. */
  async function respond(write: (writer: SseWriter) => Promise<void> | void, heartbeatMs?: number) {
    server = createServer((_req, res) => void Promise.resolve(write(new SseWriter(res, (m) => (m as { event: string }).event, heartbeatMs))));
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    return { status: res.status, headers: res.headers, body: await res.text() };
  }

  it("sends 200 and the event-stream headers with the first event, ids counting from 1", async () => {
    const got = await respond((w) => {
      w.message({ event: "started" }, utf8.encode('{"started":{}}'));
      w.message({ event: "completed" }, utf8.encode('{"completed":{}}'));
      w.end();
    });
    expect(got.status).toBe(200);
    expect(got.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(got.headers.get("cache-control")).toBe("no-cache, no-store");
    expect(got.body).toBe('event: started\nid: 1\ndata: {"started":{}}\n\nevent: completed\nid: 2\ndata: {"completed":{}}\n\n');
  });

  it("answers an error before any event with its code's HTTP status, its headers and an error event", async () => {
    const error = new ConnectError("missing credentials", Code.Unauthenticated, { "qingyu-reason": "UNAUTHENTICATED" });
    const got = await respond((w) => {
      w.error(error);
      w.end();
    });
    expect(got.status).toBe(401);
    expect(got.headers.get("qingyu-reason")).toBe("UNAUTHENTICATED");
    expect(got.body).toBe(
      `event: error\nid: 1\ndata: ${JSON.stringify({ code: "UNAUTHENTICATED", message: "missing credentials", reason: "UNAUTHENTICATED", metadata: {} })}\n\n`,
    );
  });

  it("ends a stream that already started with the error as its last event, status 200", async () => {
    const got = await respond((w) => {
      w.message({ event: "started" }, utf8.encode("{}"));
      w.error(new ConnectError("the deadline passed", Code.DeadlineExceeded));
      w.end();
    });
    expect(got.status).toBe(200);
    expect(got.body.split("\n\n").filter(Boolean)).toEqual([
      "event: started\nid: 1\ndata: {}",
      expect.stringMatching(/^event: error\nid: 2\ndata: \{"code":"DEADLINE_EXCEEDED"/),
    ]);
  });

  it("keeps an idle stream open with comment lines once it has started", async () => {
    const got = await respond(async (w) => {
      w.message({ event: "started" }, utf8.encode("{}"));
      // Timers run in order of expiry: the 10 ms heartbeat fires before this one, however busy the machine.
      await new Promise((resolve) => setTimeout(resolve, 50));
      w.end();
    }, 10);
    expect(got.body.startsWith("event: started\nid: 1\ndata: {}\n\n: keep-alive\n\n")).toBe(true);
  });

  it("answers a reconnection with 204 and nothing else", async () => {
    const got = await respond((w) => {
      w.noContent();
      w.end();
    });
    expect(got).toMatchObject({ status: 204, body: "" });
  });
});
