import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** Token counts as OpenAI reports them. */
interface FakeUsage {
  prompt_tokens: number;
  completion_tokens: number;
}

/**
 * What the server does for one POST /v1/chat/completions. Each behaviour answers in
 * the mode the request asked for: a stream behaviour given a `stream: false` request
 * answers one JSON completion of the joined chunks, and vice versa.
 */
type FakeBehaviour =
  | { kind: "stream"; chunks: string[]; delayMs?: number; usage?: FakeUsage; finishReason?: string }
  | { kind: "json"; content: string; usage?: FakeUsage; finishReason?: string; delayMs?: number; toolCalls?: FakeToolCall[] }
  /**
   * Streams each of `deltas` as one chunk's `choices[0].delta`, exactly as given (tool-call fragments
   * included), then the finish and usage frames. Streamed requests only: a non-streamed one gets a 400.
   * `splitCharacters` writes each frame that holds a multi-byte character in two writes, the first
   * ending inside that character, with a pause between them so the client reads them apart.
   */
  | { kind: "deltas"; deltas: object[]; finishReason?: string; usage?: FakeUsage; splitCharacters?: boolean }
  | { kind: "error"; status: number; headers?: Record<string, string>; body?: unknown }
  | { kind: "hang" }
  | { kind: "stream-then-hang"; chunks: string[]; delayMs?: number };

/** A complete tool call of a `json` behaviour's answer. */
interface FakeToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** One request as the server saw it, with what became of its connection. */
interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body (undefined when there was none or it was not JSON). */
  body: any;
  /** Content chunks written so far (role, finish and usage frames are not counted). */
  chunksWritten: number;
  /** When the client closed the connection before the server had finished answering. */
  closedAt?: number;
  /** When the server finished its answer. */
  finishedAt?: number;
}

export interface FakeOpenAI {
  /** Base URL, ending in /v1. */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Scripts the next chat completions, one behaviour per request, in order. */
  enqueue(...behaviours: FakeBehaviour[]): void;
  /** Resolves with `closedAt` of request `index` once the client closed it; rejects after timeoutMs. */
  waitForClose(index: number, timeoutMs?: number): Promise<number>;
  /** Stops the server, destroying open connections so nothing hangs. */
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const words = (text: string) => text.split(/\s+/).filter(Boolean);

export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  const queue: FakeBehaviour[] = [];
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const closeWaiters = new Set<() => void>();
  let stopping = false;

  const server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    let body: any;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = undefined;
    }
    const entry: RecordedRequest = {
      method: req.method ?? "",
      path: (req.url ?? "").split("?")[0]!,
      headers: req.headers,
      body,
      chunksWritten: 0,
    };
    requests.push(entry);
    res.on("close", () => {
      if (res.writableFinished) {
        entry.finishedAt = Date.now();
      } else if (!stopping) {
        entry.closedAt = Date.now();
        for (const wake of closeWaiters) wake();
      }
    });

    if (entry.method === "GET" && entry.path === "/v1/models") {
      return sendJson(res, 200, {
        object: "list",
        data: [{ id: "fake-model", object: "model", created: 0, owned_by: "fake-openai" }],
      });
    }
    if (entry.method !== "POST" || entry.path !== "/v1/chat/completions") {
      return sendJson(res, 404, errorBody(`Unknown request URL: ${entry.method} ${entry.path}`, "invalid_request_error", "unknown_url"));
    }

    const behaviour = queue.shift() ?? echo(body);
    const model = typeof body?.model === "string" ? body.model : "fake-model";
    const streamed = body?.stream === true;
    const includeUsage = body?.stream_options?.include_usage === true;
    const gone = () => res.destroyed || entry.closedAt !== undefined;

    switch (behaviour.kind) {
      case "hang":
        return;
      case "error": {
        const payload =
          behaviour.body === undefined
            ? errorBody(`fake error ${behaviour.status}`, behaviour.status >= 500 ? "server_error" : "invalid_request_error", null)
            : behaviour.body;
        res.writeHead(behaviour.status, { "content-type": "application/json", ...behaviour.headers });
        res.end(typeof payload === "string" ? payload : JSON.stringify(payload));
        return;
      }
      case "deltas": {
        if (!streamed) return sendJson(res, 400, errorBody("fake-openai: a deltas behaviour answers streamed requests only", "invalid_request_error", null));
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
        const id = `chatcmpl-fake-${requests.length}`;
        const chunk = (delta: object, finish: string | null) => ({
          id,
          object: "chat.completion.chunk",
          created: now(),
          model,
          choices: [{ index: 0, delta, finish_reason: finish }],
        });
        for (const delta of behaviour.deltas) {
          if (gone()) return;
          const bytes = Buffer.from(`data: ${JSON.stringify(chunk(delta, null))}\n\n`);
          const cut = behaviour.splitCharacters ? bytes.findIndex((b) => b >= 0x80) + 1 : 0;
          if (cut > 0) {
            res.write(bytes.subarray(0, cut));
            await sleep(10);
            if (gone()) return;
            res.write(bytes.subarray(cut));
          } else {
            res.write(bytes);
          }
          entry.chunksWritten++;
        }
        res.write(`data: ${JSON.stringify(chunk({}, behaviour.finishReason ?? "stop"))}\n\n`);
        if (includeUsage) {
          const usage = behaviour.usage ?? { prompt_tokens: countPromptWords(body), completion_tokens: behaviour.deltas.length };
          res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created: now(), model, choices: [], usage: withTotal(usage) })}\n\n`);
        }
        res.end("data: [DONE]\n\n");
        return;
      }
      case "json":
      case "stream":
      case "stream-then-hang": {
        const chunks = behaviour.kind === "json" ? [behaviour.content] : behaviour.chunks;
        const finishReason = behaviour.kind === "stream-then-hang" ? undefined : (behaviour.finishReason ?? "stop");
        const usage = (behaviour.kind !== "stream-then-hang" && behaviour.usage) || {
          prompt_tokens: countPromptWords(body),
          completion_tokens: chunks.length,
        };
        const delayMs = behaviour.delayMs ?? 0;
        if (!streamed) {
          if (delayMs) await sleep(delayMs);
          if (behaviour.kind === "stream-then-hang" || gone()) return;
          entry.chunksWritten = chunks.length;
          const toolCalls = behaviour.kind === "json" ? behaviour.toolCalls : undefined;
          return sendJson(res, 200, completion(model, chunks.join(""), finishReason!, usage, toolCalls));
        }
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
        const id = `chatcmpl-fake-${requests.length}`;
        const frame = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
        const chunk = (delta: object, finish: string | null) => ({
          id,
          object: "chat.completion.chunk",
          created: now(),
          model,
          choices: [{ index: 0, delta, finish_reason: finish }],
        });
        frame(chunk({ role: "assistant", content: "" }, null));
        for (const text of chunks) {
          if (delayMs) await sleep(delayMs);
          // A client that went away gets nothing more generated for it.
          if (gone()) return;
          frame(chunk({ content: text }, null));
          entry.chunksWritten++;
        }
        if (behaviour.kind === "stream-then-hang" || gone()) return;
        const toolCalls = behaviour.kind === "json" ? (behaviour.toolCalls ?? []) : [];
        toolCalls.forEach((call, index) =>
          frame(chunk({ tool_calls: [{ index, id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } }] }, null)),
        );
        frame(chunk({}, finishReason!));
        if (includeUsage) {
          frame({ id, object: "chat.completion.chunk", created: now(), model, choices: [], usage: withTotal(usage) });
        }
        res.end("data: [DONE]\n\n");
        return;
      }
    }
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    enqueue(...behaviours) {
      queue.push(...behaviours);
    },
    waitForClose(index, timeoutMs = 1000) {
      return new Promise<number>((resolve, reject) => {
        const check = () => {
          const closedAt = requests[index]?.closedAt;
          if (closedAt === undefined) return false;
          clearTimeout(timer);
          closeWaiters.delete(check);
          resolve(closedAt);
          return true;
        };
        const timer = setTimeout(() => {
          closeWaiters.delete(check);
          reject(new Error(`fake-openai: request ${index} was not closed by the client within ${timeoutMs} ms`));
        }, timeoutMs);
        closeWaiters.add(check);
        check();
      });
    },
    async close() {
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** The default: streams the words of the last user message back. */
function echo(body: any): FakeBehaviour {
  const messages: Array<{ role?: string; content?: unknown }> = Array.isArray(body?.messages) ? body.messages : [];
  const last = [...messages].reverse().find((m) => m.role === "user");
  const text = typeof last?.content === "string" ? last.content : "";
  return { kind: "stream", chunks: words(text).map((w, i) => (i === 0 ? w : ` ${w}`)) };
}

function countPromptWords(body: any): number {
  const messages: Array<{ content?: unknown }> = Array.isArray(body?.messages) ? body.messages : [];
  return messages.reduce((n, m) => n + (typeof m.content === "string" ? words(m.content).length : 0), 0);
}

function completion(model: string, content: string, finishReason: string, usage: FakeUsage, toolCalls?: FakeToolCall[]) {
  const message = toolCalls?.length
    ? {
        role: "assistant",
        content: content || null,
        refusal: null,
        tool_calls: toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })),
      }
    : { role: "assistant", content, refusal: null };
  return {
    id: "chatcmpl-fake",
    object: "chat.completion",
    created: now(),
    model,
    choices: [{ index: 0, message, finish_reason: finishReason, logprobs: null }],
    usage: withTotal(usage),
  };
}

function errorBody(message: string, type: string, code: string | null) {
  return { error: { message, type, param: null, code } };
}

const withTotal = (u: FakeUsage) => ({ ...u, total_tokens: u.prompt_tokens + u.completion_tokens });
const now = () => Math.floor(Date.now() / 1000);

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return Buffer.concat(parts).toString("utf8");
}
