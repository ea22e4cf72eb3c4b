// What tests that take a server's dependencies away ask of it: its health, how
// long health takes to turn, and how fast a failing call comes back.
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { statusOf, type TestClient } from "./grpc-client.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The server's overall health status (the "" service). */
export async function health(client: TestClient): Promise<Serving> {
  return (await client.unary(Health, Health.method.check, { service: "" }, { timeoutMs: 2000 })).status;
}

/** Polls health every `pollMs` until it reports `want`; resolves with how long that took. */
export async function healthBecomes(client: TestClient, want: Serving, withinMs: number, pollMs = 25): Promise<number> {
  const started = Date.now();
  for (;;) {
    const status = await health(client);
    if (status === want) return Date.now() - started;
    if (Date.now() - started > withinMs) throw new Error(`health still ${Serving[status]} after ${withinMs} ms, wanted ${Serving[want]}`);
    await sleep(pollMs);
  }
}

/** A failed call's status name and details, and how long it took to come back. */
export async function timed(call: Promise<unknown>): Promise<{ code: string; details: string; ms: number }> {
  const started = Date.now();
  const { code, details } = await statusOf(call);
  return { code: grpc.status[code]!, details, ms: Date.now() - started };
}
