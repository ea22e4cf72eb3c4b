// How long a provider's token takes to reach the client: the "adds < 1 ms at
// p99" target of issue #6.
//
// Each server streams tokens that carry their own times (bench/tick.ts): our
// server from the bench-clock provider (bench/plugins/clock.ts) through its
// pipeline, executor and transport; the bare grpc-js server straight from its
// handler, on the same schedule and the same timers. The client takes the
// arrival time on CLOCK_MONOTONIC, which all processes share, as each message
// is delivered, and subtracts:
// - the time the token was due: what a caller waits for a token that became
//   available then, including any time the server's event loop was too busy to
//   pick it up (the way a real upstream's chunk waits in its socket);
// - the time the server handed the token on (provider yield / bare write):
//   only the path from there to the client's handler.
// The bare server's figure is the floor (timers, loopback HTTP/2, the client's
// own decoding), so ours minus bare is what our server adds.
import { percentile, client, openStream } from "./grpc-client.ts";
import { readStamp, tickTask } from "./tick.ts";

export interface TokenLatencyOptions {
  /** Streams open at once on one connection, their starts spread over one interval. */
  streams: number;
  intervalMs: number;
  tokensPerStream: number;
  seconds: number;
  warmupSeconds: number;
}

export interface TokenLatencyRun {
  server: string;
  streams: number;
  intervalMs: number;
  /** Tokens measured (after warm-up). */
  tokens: number;
  calls: number;
  errors: number;
  /** From the token's due time to its arrival at the client. */
  fromDue: { p50Ms: number; p99Ms: number; maxMs: number };
  /** From the server handing it on to its arrival. */
  fromSent: { p50Ms: number; p99Ms: number; maxMs: number };
}

const summary = (samples: number[]): TokenLatencyRun["fromDue"] => {
  const sorted = Float64Array.from(samples).sort();
  return { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN };
};

/** One stream of stamped tokens; records those that arrive after `measureFrom` (hrtime ns). */
function tickStream(c: ReturnType<typeof client>, o: TokenLatencyOptions, measureFrom: bigint, fromDue: number[], fromSent: number[]): Promise<void> {
  return new Promise((res, rej) => {
    let deltas = 0;
    const call = openStream(c, "clock", tickTask(o.intervalMs, o.tokensPerStream));
    call.on("data", (msg) => {
      if (msg.event.case !== "delta") return;
      const arrived = process.hrtime.bigint();
      deltas++;
      if (arrived < measureFrom) return;
      const { dueNs, sentNs } = readStamp(msg.event.value.text);
      fromDue.push(Number(arrived - dueNs) / 1e6);
      fromSent.push(Number(arrived - sentNs) / 1e6);
    });
    call.on("error", rej);
    call.on("end", () => (deltas === o.tokensPerStream ? res() : rej(new Error(`ExecuteStream "tick" sent ${deltas} tokens, expected ${o.tokensPerStream}`))));
  });
}

/** `streams` workers, each opening the next stream when the last ends, until `seconds` after warm-up. */
export async function tokenLatency(server: string, port: number, o: TokenLatencyOptions): Promise<TokenLatencyRun> {
  const c = client(port);
  const fromDue: number[] = [];
  const fromSent: number[] = [];
  let calls = 0;
  let errors = 0;
  let firstError: unknown;
  const t0 = process.hrtime.bigint();
  const measureFrom = t0 + BigInt(Math.round(o.warmupSeconds * 1e9));
  const stopAt = measureFrom + BigInt(Math.round(o.seconds * 1e9));
  const worker = async (j: number) => {
    await new Promise((r) => setTimeout(r, (j * o.intervalMs) / o.streams));
    while (process.hrtime.bigint() < stopAt) {
      try {
        await tickStream(c, o, measureFrom, fromDue, fromSent);
        calls++;
      } catch (err) {
        errors++;
        firstError ??= err;
        if (errors > 10) break;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.streams }, (_, j) => worker(j)));
  } finally {
    c.close();
  }
  if (errors) process.stderr.write(`bench: ${server} token latency: ${errors} failed streams, first: ${(firstError as Error).message}\n`);
  return {
    server,
    streams: o.streams,
    intervalMs: o.intervalMs,
    tokens: fromDue.length,
    calls,
    errors,
    fromDue: summary(fromDue),
    fromSent: summary(fromSent),
  };
}

/** `runs` rounds over `servers`, each round in a different order; one log line a run. */
export async function tokenLatencyPhase(
  servers: ReadonlyArray<{ name: string; port: number; assertAlive(): void }>,
  runs: number,
  o: TokenLatencyOptions,
  log: (line: string) => void,
  problems: string[],
): Promise<TokenLatencyRun[]> {
  const results: TokenLatencyRun[] = [];
  for (let run = 0; run < runs; run++) {
    for (let k = 0; k < servers.length; k++) {
      const s = servers[(k + run) % servers.length]!;
      const r = await tokenLatency(s.name, s.port, o);
      s.assertAlive();
      results.push(r);
      const ms = (x: number) => x.toFixed(2);
      log(
        `  token→client ${s.name.padEnd(16)} from due p50 ${ms(r.fromDue.p50Ms)} p99 ${ms(r.fromDue.p99Ms)} ms; from hand-off p50 ${ms(r.fromSent.p50Ms)} p99 ${ms(r.fromSent.p99Ms)} ms (${r.tokens} tokens)`,
      );
      if (r.errors) problems.push(`${s.name}: ${r.errors} failed streams in the token-latency phase`);
    }
  }
  return results;
}
