import type { EventHandler, RuntimeEvent } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import pino from "pino";
import webhooks from "../../../../src/plugins/builtin/webhooks/plugin.ts";
import { setUpPlugin } from "../../../support/plugin-context.ts";

/** A secret long enough for the schema. */
export const SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret-0123";

/** One request a receiver got. */
export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  /** performance.now() when the request arrived. */
  at: number;
}

/** How a receiver answers the nth request (0-based): a status, a status with headers, or "hang" (never answers). */
export type Answer = number | { status: number; headers?: Record<string, string> } | "hang";

/** A real HTTP receiver on loopback. */
export interface Receiver {
  url: string;
  requests: Received[];
  /** Requests whose connection the sender closed before they were answered (a cancelled POST). */
  abandoned(): number;
  close(): Promise<void>;
}

export async function startReceiver(answer: (n: number, req: Received) => Answer | Promise<Answer> = () => 200): Promise<Receiver> {
  const requests: Received[] = [];
  const hanging: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const received = { headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), at: performance.now() };
      const n = requests.push(received) - 1;
      // A scripted answer that throws is a broken test: answer 500 so the failure shows, never an unhandled rejection.
      void Promise.resolve()
        .then(() => answer(n, received))
        .then(
          (a) => {
            if (a === "hang") return void hanging.push(res);
            const { status, headers } = typeof a === "number" ? { status: a, headers: {} } : a;
            res.writeHead(status, headers).end(status >= 400 ? "no" : "ok");
          },
          () => res.writeHead(500).end("the test's answer threw"),
        );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    requests,
    abandoned: () => hanging.filter((res) => res.destroyed && !res.writableEnded).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The webhooks handler with a logger whose lines the test reads. */
export async function setUp(options: unknown, env: Record<string, string> = {}): Promise<{ handler: EventHandler; lines: Record<string, any>[] }> {
  const lines: Record<string, any>[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) }));
  return { handler: await setUpPlugin(webhooks, options, { logger, env }), lines };
}

/** A runtime event, as the bus stamps it. */
export function runtimeEvent(init: Partial<RuntimeEvent> = {}): RuntimeEvent {
  return {
    id: randomUUID(),
    type: "AGENT_COMPLETED",
    time: new Date("2026-01-02T03:04:05.678Z"),
    agentId: "support",
    sessionId: "s1",
    userId: "alice",
    data: { callId: "c1", output: "héllo ✓" },
    ...init,
  };
}

/** Polls until `check` holds, failing after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The "webhook undeliverable" lines. */
export const undeliverable = (lines: Record<string, any>[]) => lines.filter((l) => l.msg === "webhook undeliverable");
