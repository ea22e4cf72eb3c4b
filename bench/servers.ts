// The configurations of our server that the bench measures, shared by
// bench/run.ts and bench/profile.ts so a profile is of the server the table is about.
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { root } from "./children.ts";
import { BENCH_API_KEY } from "./grpc-client.ts";

// The echo agent with no token delay: everything measured is the runtime's own cost.
// host 127.0.0.1 as the bare server. The clock agent streams the stamped tokens of the
// token-latency phase, from the one plugin in bench/plugins.
export function oursConfig(pipeline?: unknown[]): Record<string, unknown> {
  return {
    server: { host: "127.0.0.1", shutdownGraceMs: 1000 },
    log: { level: "info" },
    ...(pipeline ? { pipeline } : {}), // absent: the default pipeline (logging, validation)
    providers: { echo: { plugin: "echo", options: { tokenDelayMs: 0 } }, clock: { plugin: "bench-clock" } },
    agents: [
      { id: "echo", provider: "echo", model: "echo-1" },
      { id: "clock", provider: "clock", model: "clock-1" },
    ],
    plugins: { dirs: [join(root, "bench/plugins")] },
  };
}

// The suite an operator turns on first: auth with an API key, rate limit in memory, validation, logging, cache.
// Limits far above what the bench sends, so every call pays for the checks and none is refused.
export const FULL_SUITE = [
  "logging",
  { plugin: "auth", options: { apiKeys: [{ id: "bench", sha256: createHash("sha256").update(BENCH_API_KEY).digest("hex") }] } },
  {
    plugin: "rate-limit",
    options: { backend: "memory", perPrincipal: { requestsPerMinute: 1e9, tokensPerMinute: 1e12 }, perAgent: { requestsPerMinute: 1e9 } },
  },
  "validation",
  // Every call a miss: h2load sends the same body each time, so it also sends `cache-control: no-cache`
  // (skip the lookup, still key and store the answer) — the cost of a miss, less one memory read.
  { plugin: "cache", options: { backend: "memory" } },
];

// The full suite with output redaction (default options) innermost, after the cache, where the docs
// put it: what redacting every answer costs on top of the suite. The bench's answers hold nothing
// to redact, so this is the cost of looking (the scan, the held-back text), not of replacing.
export const FULL_SUITE_REDACT = [...FULL_SUITE, "redact"];

/** An OTLP/HTTP endpoint that accepts and drops everything, so exporting costs the server what it would in production. */
export async function otlpSink(): Promise<{ url: string }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/x-protobuf" }).end());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  server.unref();
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
