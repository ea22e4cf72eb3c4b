// A lean OpenAI-compatible upstream for the openai-provider phase
// (bench/openai-phase.ts), run as its own process so that its CPU is never
// counted as the server's. POST /v1/chat/completions answers the words of the
// last user message back, streamed as OpenAI streams them (a role chunk, one
// content chunk per word, a chunk with finish_reason, a usage chunk when
// stream_options.include_usage, then [DONE]), or as one JSON completion when not
// streamed. A model name ending in "-gap<N>ms" spaces the content chunks N ms
// apart (the first comes at once), so each reaches the server in a read of its
// own as a real model's tokens do. "-stamp" after it (e.g. "bench-gap1ms-stamp")
// ends each content piece with the time it was written, "~<epoch ms, µs
// decimals>~", for measuring each token's way to a client (bench/openai-real.ts).
// Prints {"port":N} on stdout once listening.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

let served = 0;

function words(body: any): string[] {
  const messages: Array<{ role?: string; content?: unknown }> = Array.isArray(body?.messages) ? body.messages : [];
  const last = messages.findLast((m) => m.role === "user");
  const text = typeof last?.content === "string" ? last.content : "";
  return text
    .split(/\s+/)
    .filter(Boolean)
    .map((w, i) => (i ? ` ${w}` : w));
}

function stream(res: ServerResponse, body: any, model: string, pieces: string[], usage: object): void {
  const id = `chatcmpl-bench-${++served}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: object, finish: string | null) =>
    `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  const gapMs = Number(/-gap(\d+)ms(?:-|$)/.exec(model)?.[1] ?? 0);
  // Taken just before the write: what a token's latency to a client is measured from.
  const stamp = model.endsWith("-stamp") ? (piece: string) => `${piece}~${(performance.timeOrigin + performance.now()).toFixed(3)}~` : undefined;
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.write(chunk({ role: "assistant", content: "" }, null));
  let i = 0;
  const next = () => {
    if (res.destroyed) return; // the client went away
    if (i < pieces.length) {
      const piece = pieces[i++]!;
      res.write(chunk({ content: stamp ? stamp(piece) : piece }, null));
      if (gapMs) return void setTimeout(next, gapMs);
      return next();
    }
    let tail = chunk({}, "stop");
    if (body?.stream_options?.include_usage) {
      tail += `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [], usage })}\n\n`;
    }
    res.end(`${tail}data: [DONE]\n\n`);
  };
  next();
}

function handle(req: IncomingMessage, res: ServerResponse, raw: string): void {
  if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
    res
      .writeHead(404, { "content-type": "application/json" })
      .end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}`, type: "invalid_request_error" } }));
    return;
  }
  const body = JSON.parse(raw);
  const model = typeof body.model === "string" ? body.model : "fake";
  const pieces = words(body);
  const promptTokens = (body.messages as Array<{ content?: unknown }>).reduce(
    (n, m) => n + (typeof m.content === "string" ? m.content.split(/\s+/).length : 0),
    0,
  );
  const usage = { prompt_tokens: promptTokens, completion_tokens: pieces.length, total_tokens: promptTokens + pieces.length };
  if (body.stream === true) return stream(res, body, model, pieces, usage);
  res.writeHead(200, { "content-type": "application/json" }).end(
    JSON.stringify({
      id: `chatcmpl-bench-${++served}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [{ index: 0, message: { role: "assistant", content: pieces.join(""), refusal: null }, finish_reason: "stop", logprobs: null }],
      usage,
    }),
  );
}

const server = createServer((req, res) => {
  let raw = "";
  req.setEncoding("utf8");
  req.on("data", (d: string) => (raw += d));
  req.on("end", () => {
    try {
      handle(req, res, raw);
    } catch (err) {
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: String(err), type: "invalid_request_error" } }));
    }
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`));

for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
