// Connect's unary protocol served by our own code (connect-unary.ts), read by
// connect-es's own client (the reference for the protocol) and by hand with
// fetch, as curl users see it.
import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import { createClient, ConnectError as EsConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { AgentService, ExecuteResponseSchema, type ExecuteRequest } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { CallTracker } from "../../src/transport/call-tracker.ts";
import { ConnectUnary } from "../../src/transport/connect-unary.ts";
import { ErrorEdge } from "../../src/transport/edge-error.ts";
import { OutageLog } from "../../src/transport/outage-log.ts";
import type { CallContext, HostedService } from "../../src/transport/types.ts";
import { closeFormServers, serveForm } from "../support/form-server.ts";

const silent = pino({ level: "silent" });
const LIMITS = { maxMessageBytes: 4096, maxMetadataBytes: 8192, maxMapEntries: 4, maxMapBytes: 1000, defaultDeadlineMs: 60_000, maxDeadlineMs: 120_000 };
const PATH = "/qingyu.agent.v1.AgentService/Execute";

type Impl = (req: ExecuteRequest, call: CallContext) => Promise<unknown>;

afterEach(closeFormServers);

/** ConnectUnary in front of a 404 standing for connect-node, on a real HTTP/1.1 server, as HttpTransport mounts it. */
async function serve(impl: Impl) {
  const services: HostedService[] = [{ service: AgentService as never, impl: { execute: impl } as never, track: {} }];
  const unary = new ConnectUnary(services, new CallTracker(), { limits: LIMITS, edge: new ErrorEdge(silent, new OutageLog(silent, 30_000)) });
  return serveForm(unary);
}

const clientOf = (base: string, useBinaryFormat: boolean) =>
  createClient(AgentService, createConnectTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat }));

const post = (base: string, body: string | Uint8Array, headers: Record<string, string> = { "content-type": "application/json" }) =>
  fetch(`${base}${PATH}`, { method: "POST", headers, body, signal: AbortSignal.timeout(10_000) });

describe("Connect unary calls served by ConnectUnary", () => {
  it("answers connect-es's client in JSON and in protobuf, with the call's trailers as trailer- headers", async () => {
    const { base, handled } = await serve(async (req, call) => {
      call.setTrailer("x-served-by", "us");
      return create(ExecuteResponseSchema, { result: { success: true, output: `echo: ${req.task}` } });
    });
    for (const binary of [false, true]) {
      let trailer: Headers | undefined;
      const reply = await clientOf(base, binary).execute({ agentId: "a", task: `hi ${binary}` }, { onTrailer: (t) => (trailer = t) });
      expect([reply.result?.output, trailer?.get("x-served-by")]).toEqual([`echo: hi ${binary}`, "us"]);
    }
    const res = await post(base, JSON.stringify({ agentId: "a", task: "by hand" }), { "content-type": "application/json; charset=utf-8" });
    expect([res.status, res.headers.get("content-type"), res.headers.get("trailer-x-served-by"), await res.json()]).toEqual([
      200,
      "application/json",
      "us",
      { result: { success: true, output: "echo: by hand" } },
    ]);
    expect(handled()).toBe(3);
  });

  it("answers an error with its HTTP status, its JSON (reason in details) and its metadata as headers", async () => {
    const { base } = await serve(async () => {
      throw withReason(new ConnectError("no agent called ghost", Code.NotFound), ErrorReason.AGENT_NOT_FOUND, { agent_id: "ghost" });
    });
    const err = await clientOf(base, false)
      .execute({ agentId: "ghost", task: "hi" })
      .catch((e: unknown) => e as EsConnectError);
    expect([err instanceof EsConnectError, (err as EsConnectError).code, (err as EsConnectError).metadata.get("qingyu-reason")]).toEqual([
      true,
      Code.NotFound,
      "AGENT_NOT_FOUND",
    ]);
    const res = await post(base, JSON.stringify({ agentId: "ghost", task: "hi" }));
    const body = (await res.json()) as { code: string; message: string; details: Array<{ type: string; debug: unknown }> };
    expect([res.status, res.headers.get("content-type"), res.headers.get("qingyu-reason"), body.code, body.message]).toEqual([
      404,
      "application/json",
      "AGENT_NOT_FOUND",
      "not_found",
      "no agent called ghost",
    ]);
    expect(body.details[0]).toMatchObject({ type: "google.rpc.ErrorInfo", debug: { reason: "AGENT_NOT_FOUND", domain: "qingyu.dev" } });
  });

  it("refuses a body that does not decode, or is over the size limit, with INVALID_ARGUMENT or RESOURCE_EXHAUSTED, and runs nothing", async () => {
    let ran = 0;
    const { base } = await serve(async () => {
      ran++;
      return create(ExecuteResponseSchema);
    });
    const cases: Array<[string | Uint8Array, Record<string, string>, number, string]> = [
      ['{"agentId":', { "content-type": "application/json" }, 400, "invalid_argument"],
      ['{"agentId":5}', { "content-type": "application/json" }, 400, "invalid_argument"],
      [new Uint8Array([0xff, 0xff]), { "content-type": "application/proto" }, 400, "invalid_argument"],
      [JSON.stringify({ task: "x".repeat(5000) }), { "content-type": "application/json" }, 429, "resource_exhausted"],
      ["{}", { "content-type": "application/json", "connect-timeout-ms": "soon" }, 400, "invalid_argument"],
    ];
    for (const [body, headers, status, code] of cases) {
      const res = await post(base, body, headers);
      const json = (await res.json()) as { code: string };
      expect([res.status, json.code, res.headers.get("qingyu-reason")], JSON.stringify(headers)).toEqual([status, code, code.toUpperCase()]);
    }
    expect(ran).toBe(0);
  });

  it("leaves a compressed body, a GET, other content types and other methods to connect-node", async () => {
    const { base, handled } = await serve(async () => create(ExecuteResponseSchema));
    const elsewhere = [
      post(base, "{}", { "content-type": "application/json", "content-encoding": "gzip" }),
      fetch(`${base}${PATH}?message={}&encoding=json`),
      post(base, "{}", { "content-type": "text/plain" }),
      post(base, "{}", { "content-type": "application/connect+json" }),
      fetch(`${base}/qingyu.agent.v1.AgentService/ExecuteStream`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }),
    ];
    expect((await Promise.all(elsewhere)).map((r) => r.status)).toEqual([404, 404, 404, 404, 404]);
    expect(handled()).toBe(0);
  });

  it("cancels the call when the client goes away, and ends it at the client's deadline with DEADLINE_EXCEEDED", async () => {
    let seen: unknown;
    let markStarted!: () => void;
    const started = new Promise<void>((resolve) => (markStarted = resolve));
    const { base } = await serve(
      (_req, call) =>
        new Promise((_resolve, reject) => {
          markStarted();
          call.signal.addEventListener("abort", () => {
            seen = call.signal.reason;
            reject(call.signal.reason as Error);
          });
        }),
    );
    const gone = new AbortController();
    const call = fetch(`${base}${PATH}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}", signal: gone.signal }).catch(
      () => "aborted",
    );
    await started;
    gone.abort();
    expect(await call).toBe("aborted");
    await expect.poll(() => (seen as ConnectError | undefined)?.code).toBe(Code.Canceled);

    const res = await post(base, "{}", { "content-type": "application/json", "connect-timeout-ms": "50" });
    expect([res.status, ((await res.json()) as { code: string }).code]).toEqual([504, "deadline_exceeded"]);
  });
});
