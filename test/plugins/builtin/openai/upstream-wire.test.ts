// The openai provider against an upstream that answers byte by byte as the test
// writes it: what a real server or gateway may do to the event stream (compress
// it, end lines with CRLF, split a character between two reads), the error event
// some servers send mid-stream, and the pooled connection behind the calls.
import { Code, type LlmProvider, type ProviderChunk } from "@qingyu/plugin-api";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { getEventListeners } from "node:events";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { gzipSync } from "node:zlib";
import openaiPlugin from "../../../../src/plugins/builtin/openai/plugin.ts";
import { setUpPlugin } from "../../../support/plugin-context.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

type Answer = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sse = (data: unknown) => `data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
const delta = (content: string) => sse({ model: "m-1", choices: [{ index: 0, delta: { content }, finish_reason: null }] });
const finish = sse({ model: "m-1", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });
const usage = sse({ model: "m-1", choices: [], usage: { prompt_tokens: 3, completion_tokens: 2 } });

let server: Server;
let url = "";
const answers: Answer[] = [];
const sockets = new Set<Socket>();
let connections = 0;
let provider: LlmProvider | undefined;

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => void answers.shift()?.(req, res));
  });
  server.on("connection", (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

afterEach(async () => {
  await provider?.dispose?.();
  provider = undefined;
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
});

async function open(): Promise<LlmProvider> {
  provider = await setUpPlugin(openaiPlugin, { baseUrl: url, apiKey: "k" });
  return provider;
}

async function run(p: LlmProvider, signal = new AbortController().signal): Promise<{ text: string; chunks: ProviderChunk[] }> {
  const chunks: ProviderChunk[] = [];
  for await (const c of p.stream({ model: "m-1", messages: [{ role: "user", content: "hi" }] }, signal)) chunks.push(c);
  return { text: chunks.map((c) => (c.type === "delta" ? c.text : "")).join(""), chunks };
}

/** Streams one answer that fails: the chunks that came before the failure, and the failure. */
async function failedStream(): Promise<{ seen: ProviderChunk[]; err: { code: Code; message: string } | undefined }> {
  const seen: ProviderChunk[] = [];
  const err = await (async () => {
    for await (const c of (await open()).stream({ model: "m-1", messages: [] }, new AbortController().signal)) seen.push(c);
  })().then(
    () => undefined,
    (e: unknown) => e as { code: Code; message: string },
  );
  return { seen, err };
}

describe("the openai provider on the wire", () => {
  it("reads an event stream the upstream gzips", async () => {
    answers.push((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream", "content-encoding": "gzip" });
      res.end(gzipSync(delta("packed ") + delta("tight") + finish + usage + sse("[DONE]")));
    });
    const { text, chunks } = await run(await open());
    expect(text).toBe("packed tight");
    expect(chunks.at(-1)).toEqual({ type: "finish", finishReason: "stop", usage: { inputTokens: 3, outputTokens: 2 }, model: "m-1" });
  });

  it("reads CRLF line ends and characters split between two reads, sent a few bytes at a time", async () => {
    const body = Buffer.from((delta("naïve ") + delta("café ✓") + finish + sse("[DONE]")).replaceAll("\n", "\r\n"));
    answers.push(async (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
      // 7-byte writes cut the CRLFs and the multi-byte characters at every offset over the body.
      for (let i = 0; i < body.length; i += 7) {
        res.write(body.subarray(i, i + 7));
        await sleep(1);
      }
      res.end();
    });
    expect((await run(await open())).text).toBe("naïve café ✓");
  });

  it("an error event after the first token is UNAVAILABLE with the upstream's words, and the token was already out", async () => {
    answers.push((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(delta("half ") + `event: error\ndata: ${JSON.stringify({ message: "engine overloaded" })}\n\n`);
    });
    const { seen, err } = await failedStream();
    expect(seen).toEqual([{ type: "delta", text: "half " }]);
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.message).toContain("upstream reported an error mid-stream: engine overloaded");
  });

  it("an event that is not JSON is UNAVAILABLE quoting it, after the text before it", async () => {
    answers.push((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(delta("ok ") + "data: <html>bad gateway</html>\n\n");
    });
    const { seen, err } = await failedStream();
    expect(seen).toEqual([{ type: "delta", text: "ok " }]);
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.message).toContain("upstream sent an event that is not JSON: <html>bad gateway</html>");
  });

  it("wholeAnswers json: a 200 whose body is not JSON, or has no choice, is UNAVAILABLE and retryable", async () => {
    provider = await setUpPlugin(openaiPlugin, { baseUrl: url, apiKey: "k", wholeAnswers: "json" });
    const request = { model: "m-1", messages: [{ role: "user" as const, content: "hi" }] };
    answers.push((_req, res) => void res.writeHead(200, { "content-type": "application/json" }).end("<html>maintenance</html>"));
    answers.push((_req, res) => void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: "x", choices: [] })));
    const failures: Array<{ code: Code; message: string; retryable: boolean }> = [];
    for (let i = 0; i < 2; i++)
      failures.push(
        await provider.generate!(request, new AbortController().signal).then(
          () => Promise.reject(new Error("answered")),
          (e: unknown) => e as never,
        ),
      );
    expect(failures.map((f) => [f.code, f.retryable])).toEqual([
      [Code.Unavailable, true],
      [Code.Unavailable, true],
    ]);
    expect(failures[0]!.message).toContain("answered with a body that is not JSON: <html>maintenance</html>");
    expect(failures[1]!.message).toContain("answered without a choice");
  });

  it("an error answer in another server's shape still gives the upstream's words", async () => {
    const p = await open();
    answers.push(
      (_req, res) =>
        void res
          .writeHead(400, { "content-type": "application/json" })
          .end(JSON.stringify({ object: "error", message: "max_tokens is too large", type: "BadRequestError" })),
    );
    answers.push((_req, res) => void res.writeHead(422, { "content-type": "application/json" }).end(JSON.stringify({ detail: "messages: field required" })));
    answers.push((_req, res) => void res.writeHead(503).end());
    const messages: string[] = [];
    for (let i = 0; i < 3; i++)
      messages.push(
        await run(p).then(
          () => "answered",
          (e: unknown) => (e as Error).message,
        ),
      );
    expect(messages[0]).toContain("upstream answered 400 Bad Request: max_tokens is too large");
    expect(messages[1]).toContain("upstream answered 422 Unprocessable Entity: messages: field required");
    expect(messages[2]).toContain("upstream answered 503 Service Unavailable: (no body)");
  });

  // The pool frees a connection a tick after its body ends, so a call made at once may open a second one.
  it("answers in a row share pooled connections, which dispose closes", async () => {
    const p = await open();
    const before = connections;
    for (let i = 0; i < 6; i++) {
      answers.push((_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(delta(`n${i}`) + finish + sse("[DONE]"));
      });
      expect((await run(p)).text).toBe(`n${i}`);
    }
    expect(connections - before).toBeLessThanOrEqual(2);
    const open_ = [...sockets];
    expect(open_.length).toBeGreaterThan(0);
    await p.dispose?.();
    provider = undefined;
    await Promise.all(open_.map((s) => (s.destroyed ? undefined : new Promise((r) => s.once("close", r)))));
    expect(sockets.size).toBe(0);
  });

  it("follows a 307 or 308 with the same request; credentials go only to the same origin", async () => {
    const seen: Array<{ url?: string; auth?: string; body: string }> = [];
    const other = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        seen.push({ url: `other${req.url}`, auth: req.headers.authorization, body });
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(delta("moved ") + delta("twice") + finish + sse("[DONE]"));
      });
    });
    await new Promise<void>((r) => other.listen(0, "127.0.0.1", r));
    const otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    try {
      answers.push((req, res) => {
        seen.push({ url: req.url, auth: req.headers.authorization, body: "" });
        res.writeHead(307, { location: "/v2/chat/completions" }).end();
      });
      answers.push((req, res) => {
        seen.push({ url: req.url, auth: req.headers.authorization, body: "" });
        res.writeHead(308, { location: `${otherUrl}/v3/chat/completions` }).end();
      });
      expect((await run(await open())).text).toBe("moved twice");
      expect(seen.map((x) => [x.url, x.auth])).toEqual([
        ["/v1/chat/completions", "Bearer k"],
        ["/v2/chat/completions", "Bearer k"],
        ["other/v3/chat/completions", undefined],
      ]);
      // The POST body arrived whole at the end of the chain.
      expect(JSON.parse(seen[2]!.body)).toMatchObject({ model: "m-1", stream: true });
    } finally {
      await new Promise((r) => other.close(r));
    }
  });

  it("a 301 is FAILED_PRECONDITION naming where the endpoint moved: a POST is not re-sent as a GET", async () => {
    answers.push((_req, res) => void res.writeHead(301, { location: "https://api.example.test/v1/chat/completions" }).end());
    const err = await run(await open()).then(
      () => undefined,
      (e: unknown) => e as { code: Code; message: string; retryable: boolean },
    );
    expect(err?.code).toBe(Code.FailedPrecondition);
    expect(err?.retryable).toBe(false);
    expect(err?.message).toContain("upstream answered 301 Moved Permanently (to https://api.example.test/v1/chat/completions: set baseUrl");
  });

  // On Node 20 a signal from AbortSignal.any that the client listens to is never collected
  // (about 1.2 KB a call, for the life of the process).
  it("a call leaves nothing behind: no listener on the caller's signal, no memory held per call", async () => {
    const p = await open();
    const answer: Answer = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(delta("x") + finish + sse("[DONE]"));
    };
    const calls = async (n: number, signal?: AbortSignal) => {
      for (let i = 0; i < n; i++) {
        answers.push(answer);
        await run(p, signal);
      }
    };
    const caller = new AbortController();
    await calls(1, caller.signal);
    expect(getEventListeners(caller.signal, "abort")).toHaveLength(0);
    const heap = async () => {
      await sleep(10);
      gc();
      return process.memoryUsage().heapUsed;
    };
    // The heap grows for a while as code warms up (compiled code, caches), then levels off.
    await calls(1500);
    const before = await heap();
    await calls(3000);
    const grown = (await heap()) - before;
    expect(grown / 3000, `${grown} bytes kept after 3000 calls`).toBeLessThan(150);
  });
});
