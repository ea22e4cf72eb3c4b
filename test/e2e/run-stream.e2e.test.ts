// The bidirectional RunService.Run through the real server process (Node, or Deno with
// QINGYU_E2E_RUNTIME=deno): over gRPC (grpc-js) and over Connect on HTTP/2 (connect-node), a
// run started on the stream, its caller tool answered and its approval decided on the same
// stream, a cancel on the stream, attach after a sequence number, and refusals that end the
// stream with their status while the run goes on; a background run's RUN_* events reach
// Subscribe and a signed webhook. examples/python/run_stream.py covers grpcio (tools-example.e2e).
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { RunRequestSchema, RunService, type RunResponse } from "../../src/gen/qingyu/agent/v1/run_pb.ts";
import { EventService, EventType } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { verifyWebhook } from "../../src/plugins/builtin/webhooks/signature.ts";
import { TestClient } from "../support/grpc-client.ts";
import { projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { serveFile, type ServerProcess } from "../support/server-process.ts";

type Request = MessageInitShape<typeof RunRequestSchema>;
const api = JSON.stringify(publicApi);
const SECRET = "run-events-webhook-secret-0123456789abcdef";
const RUN_TYPES = ["RUN_STARTED", "RUN_WAITING", "RUN_COMPLETED", "RUN_FAILED", "RUN_CANCELLED"];
const callerTools = [{ name: "user_location", description: "Where the user is", inputSchema: { type: "object" } }];
const startOn = (task: string, options: Record<string, unknown> = {}): Request => ({
  action: { case: "start", value: { execute: { agentId: "clerk", task, userId: "ann" }, options: { callerTools, ...options } } },
});

/** Reads a stream's responses, answering each with whatever `reply` returns; resolves with all, or the status it ended with. */
function converse(
  call: grpc.ClientDuplexStream<Request, RunResponse>,
  reply: (r: RunResponse) => Request | undefined,
): Promise<{ responses: RunResponse[]; status?: grpc.ServiceError }> {
  const responses: RunResponse[] = [];
  return new Promise((resolve) => {
    call.on("data", (r: RunResponse) => {
      responses.push(r);
      const next = reply(r);
      if (next) call.write(next);
    });
    call.on("error", (status: grpc.ServiceError) => resolve({ responses, status }));
    call.on("end", () => resolve({ responses }));
  });
}

const eventKinds = (rs: RunResponse[]) => rs.flatMap((r) => (r.message.case === "event" ? [r.message.value.event.case] : []));
const seqs = (rs: RunResponse[]) => rs.flatMap((r) => (r.message.case === "event" ? [Number(r.message.value.seq)] : []));
const pendingOf = (r: RunResponse) => (r.message.case === "event" && r.message.value.event.case === "waiting" ? r.message.value.event.value.pending : []);

describe("the bidirectional Run stream", () => {
  let dir: string;
  let server: ServerProcess;
  let client: TestClient;
  // A webhook endpoint: what the server POSTs, with whether its signature checks out.
  const hooks: { type: string; runId: string; signed: boolean }[] = [];
  let receiver: Server;

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const event = JSON.parse(body.toString()) as { type: string; data: { runId: string } };
        hooks.push({ type: event.type, runId: event.data.runId, signed: verifyWebhook(SECRET, body, req.headers) });
        res.end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
    dir = projectDir();
    writeFiles(dir, {
      "plugins/refund.mjs": `import { definePlugin } from ${api};
export default definePlugin({ name: "refund", kind: "tool", setup: () => ({
  name: "refund", description: "", needsApproval: true, inputSchema: { type: "object", properties: { amount: { type: "number" } } },
  execute: (args) => "refunded " + args.amount,
}) });
`,
      "config.json": JSON.stringify({
        server: { host: "127.0.0.1" },
        log: { level: "warn" },
        tools: { plugins: ["refund"] },
        agents: [{ id: "clerk", provider: "echo", model: "echo-1", tools: ["refund"] }],
        runs: { renewEveryMs: 100, pollMs: 50 },
        eventHandlers: [{ plugin: "webhooks", options: { endpoints: [{ url: hookUrl, secret: SECRET, types: RUN_TYPES }] } }],
      }),
    });
    server = await serveFile(join(dir, "config.json"), ["--port", "0", "--http-port", "0"]);
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    await new Promise((resolve) => receiver?.close(resolve));
    removeProjectDirs();
  });

  it("over gRPC: starts a run, answers its caller tool on the stream, and ends after the run's last event", async () => {
    const call = client.duplex(RunService, RunService.method.run, { timeoutMs: 20_000 });
    call.write(startOn('!call user_location {"precise":true}\nwhere am I?'));
    const { responses, status } = await converse(call, (r) => {
      const [pending] = pendingOf(r);
      if (!pending) return undefined;
      const results = [{ toolCallId: pending.call!.toolCallId, output: { output: "Porto" } }];
      return { action: { case: "toolResults", value: { results } } };
    });
    call.end();
    expect(status).toBeUndefined();
    expect(seqs(responses)).toEqual(seqs(responses).map((_, i) => i + 1));
    const kinds = eventKinds(responses);
    expect([kinds[0], kinds.at(-1)]).toEqual(["accepted", "completed"]);
    expect(kinds.indexOf("waiting")).toBeLessThan(kinds.indexOf("toolResult"));
    // Text streamed after the run went on from its parking reaches this stream too.
    expect(kinds.slice(kinds.indexOf("toolResult"))).toContain("delta");
    const answered = responses.find((r) => r.message.case === "toolResults")!;
    expect(answered.message.value).toMatchObject({ accepted: [expect.stringMatching(/^call_/)] });
    const done = responses.at(-1)!.message.value as { event: { value: { output: string } } };
    expect(done.event.value.output).toBe("[history=0] where am I?\n[user_location] Porto");
  });

  it("over gRPC: an approval decided on the stream runs the tool, and the stream goes on to the run's end", async () => {
    const call = client.duplex(RunService, RunService.method.run, { timeoutMs: 20_000 });
    call.write(startOn('!call refund {"amount":7}\nrefund me'));
    const { responses, status } = await converse(call, (r) => {
      const [pending] = pendingOf(r);
      return pending ? { action: { case: "approval", value: { toolCallId: pending.call!.toolCallId, approved: true } } } : undefined;
    });
    call.end();
    expect(status).toBeUndefined();
    expect(responses.find((r) => r.message.case === "approval")!.message.value).toMatchObject({ decided: true });
    const last = responses.at(-1)!.message.value as { event: { case: string; value: { output: string; toolCalls: { outcome: number }[] } } };
    expect(last.event.case).toBe("completed");
    expect(last.event.value.toolCalls.map((c) => c.outcome)).toEqual([ToolOutcome.OK]);
    expect(last.event.value.output).toBe("[history=0] refund me\n[refund] refunded 7");
  });

  it("over gRPC: a request refused mid-stream ends the stream with its status; the run waits on, and an attached stream finishes it", async () => {
    const call = client.duplex(RunService, RunService.method.run, { timeoutMs: 20_000 });
    call.write(startOn('!call refund {"amount":9}\nrefund again'));
    let runId = "";
    let toolCallId = "";
    const first = await converse(call, (r) => {
      if (r.message.case === "event") runId = r.message.value.runId;
      const [pending] = pendingOf(r);
      if (!pending) return undefined;
      toolCallId = pending.call!.toolCallId;
      // Another run's id: refused.
      return { action: { case: "cancel", value: { runId: "00000000-0000-4000-8000-000000000000" } } };
    });
    expect(first.status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(first.status?.details).toMatch(/^cancel.run_id: names run "00000000-0000-4000-8000-000000000000", not this stream's run "[0-9a-f-]{36}"$/);
    const attach = client.duplex(RunService, RunService.method.run, { timeoutMs: 20_000 });
    attach.write({ action: { case: "attach", value: { runId, userId: "ann", afterSeq: 0n } } });
    attach.write({ action: { case: "approval", value: { toolCallId, approved: false, message: "not today" } } });
    attach.end();
    const second = await converse(attach, () => undefined);
    expect(second.status).toBeUndefined();
    const kinds = eventKinds(second.responses);
    // The replay holds the run's wait, then it goes on (refused) to its end.
    expect([kinds[0], kinds.includes("waiting"), kinds.at(-1)]).toEqual(["accepted", true, "completed"]);
    const last = second.responses.at(-1)!.message.value as { event: { value: { output: string; toolCalls: { outcome: number }[] } } };
    expect(last.event.value.toolCalls.map((c) => c.outcome)).toEqual([ToolOutcome.DENIED]);
    expect(last.event.value.output).toBe("[history=0] refund again\n[refund] refused by the person asked to approve it: not today");
  });

  it("over gRPC: cancel on the stream stops a parked run; the answer and the cancelled event both arrive", async () => {
    const call = client.duplex(RunService, RunService.method.run, { timeoutMs: 20_000 });
    call.write(startOn("!call user_location {}\nwhere?"));
    const { responses, status } = await converse(call, (r) =>
      pendingOf(r).length ? { action: { case: "cancel", value: { mode: 2 /* rollback */ } } } : undefined,
    );
    call.end();
    expect(status).toBeUndefined();
    expect(eventKinds(responses).at(-1)).toBe("cancelled");
    const answer = responses.find((r) => r.message.case === "cancel")!.message.value as { run: { status: number } };
    expect(answer.run.status).toBe(6); // RUN_STATUS_CANCELLED
  });

  it("a background run tells Subscribe and a signed webhook it started, waits, and completed", async () => {
    const types = [EventType.RUN_STARTED, EventType.RUN_WAITING, EventType.RUN_COMPLETED];
    const sub = client.stream(EventService, EventService.method.subscribe, { types });
    const seen: { type: EventType; runId: string }[] = [];
    sub.on("data", (m: { event: { type: EventType; data?: { runId?: string } } }) => seen.push({ type: m.event.type, runId: String(m.event.data?.runId) }));
    sub.on("error", () => undefined);
    // The subscription registers before the run starts.
    await new Promise((r) => setTimeout(r, 200));
    const call = client.duplex(RunService, RunService.method.run, { timeoutMs: 20_000 });
    call.write(startOn('!call refund {"amount":3}\nrefund in the background', { background: true }));
    call.end();
    const { responses } = await converse(call, () => undefined);
    expect(eventKinds(responses)).toEqual(["accepted"]);
    const runId = (responses[0]!.message.value as { runId: string }).runId;
    const pending = await waitFor("the run to wait", () => seen.find((e) => e.runId === runId && e.type === EventType.RUN_WAITING), 10_000);
    expect(pending).toBeDefined();
    const { run } = await client.unary(RunService, RunService.method.getRun, { runId, userId: "ann" });
    await client.unary(RunService, RunService.method.submitApproval, { runId, userId: "ann", toolCallId: run!.pending[0]!.call!.toolCallId, approved: true });
    await waitFor("RUN_COMPLETED", () => seen.find((e) => e.runId === runId && e.type === EventType.RUN_COMPLETED), 10_000);
    sub.cancel();
    expect(seen.filter((e) => e.runId === runId).map((e) => e.type)).toEqual(types);
    await waitFor("the webhook's RUN_COMPLETED", () => hooks.find((h) => h.runId === runId && h.type === "RUN_COMPLETED"), 10_000);
    expect(hooks.filter((h) => h.runId === runId)).toEqual(["RUN_STARTED", "RUN_WAITING", "RUN_COMPLETED"].map((type) => ({ type, runId, signed: true })));
  });

  it("refuses a stream whose first message is not start or attach, and one with no message at all", async () => {
    const call = client.duplex(RunService, RunService.method.run, { timeoutMs: 10_000 });
    call.write({ action: { case: "toolResults", value: { results: [] } } });
    const first = await converse(call, () => undefined);
    expect(first.status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(first.status?.details).toBe("action: must be start or attach in the first message, not toolResults");
    const empty = client.duplex(RunService, RunService.method.run, { timeoutMs: 10_000 });
    empty.end();
    expect((await converse(empty, () => undefined)).status?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("over Connect on HTTP/2 (the HTTP port with TLS): the same conversation with connect-node's client", async () => {
    // Plain HTTP on the HTTP port is HTTP/1.1, which cannot carry a bidi stream; with TLS it speaks HTTP/2 too.
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1"].concat([
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
      ]),
      { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
    );
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { server: Record<string, unknown> };
    config.server.tls = { cert: "cert.pem", key: "key.pem" };
    writeFileSync(join(dir, "tls.json"), JSON.stringify(config));
    const secure = await serveFile(join(dir, "tls.json"), ["--port", "0", "--http-port", "0"]);
    try {
      const transport = createConnectTransport({
        baseUrl: `https://127.0.0.1:${secure.httpPort}`,
        httpVersion: "2",
        nodeOptions: { ca: readFileSync(join(dir, "cert.pem")), servername: "localhost" },
      });
      const runs = createClient(RunService, transport);
      const outbox: Request[] = [startOn("!call user_location {}\nwhere now?")];
      let wake: (() => void) | undefined;
      let closed = false;
      async function* requests() {
        for (;;) {
          const next = outbox.shift();
          if (next) yield create(RunRequestSchema, next);
          else if (closed) return;
          else await new Promise<void>((r) => (wake = r));
        }
      }
      const responses: RunResponse[] = [];
      for await (const r of runs.run(requests(), { timeoutMs: 20_000 })) {
        responses.push(r);
        const [pending] = pendingOf(r);
        if (pending) {
          outbox.push({ action: { case: "toolResults", value: { results: [{ toolCallId: pending.call!.toolCallId, output: { output: "Faro" } }] } } });
          wake?.();
        }
      }
      closed = true;
      wake?.();
      const done = responses.at(-1)!.message.value as { event: { case: string; value: { output: string } } };
      expect(done.event.case).toBe("completed");
      expect(done.event.value.output).toBe("[history=0] where now?\n[user_location] Faro");
      expect(seqs(responses)).toEqual(seqs(responses).map((_, i) => i + 1));
    } finally {
      await secure.stop();
    }
  });
});
