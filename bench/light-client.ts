// The light load generator of bench/openai-real.ts, in a process of its own
// (forked, commanded over IPC) so that its CPU is read from /proc apart from
// the bench's and the servers'. node:http with one keep-alive Agent, not the
// `openai` client nor connect-node: the same few µs of client work on both
// sides, so the difference between calling the upstream directly and calling
// it through our server is our server's. (undici is not a dependency; node:http
// keeps the bench free of one.) gRPC calls, for time to first token only, go
// over node:http2 with hand-made frames for the same reason.
//
// It runs closed loops (N calls in flight, each worker issuing its next call as
// its last ends) and call-by-call alternations between targets, and reads CPU
// from /proc at the window's edges: its own, and of the pids it is given.
import http from "node:http";
import http2 from "node:http2";
import { cpuMicros } from "./children.ts";
import { scanner, type CallResult, type Kind } from "./light-scan.ts";

/** One endpoint to call: a prepared request and how to read its answer. */
export interface Target {
  name: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  /** A body to send as bytes, base64 (gRPC and Connect-streaming envelopes). */
  bodyBase64?: boolean;
  kind: Kind;
}

/** A closed-loop run: calls in flight, window, and whose CPU to read at its edges. */
export interface LoopCommand {
  type: "loop";
  id: number;
  target: Target;
  inFlight: number;
  seconds: number;
  warmupSeconds: number;
  pids: Record<string, number>;
}

/** One call at a time, each target in turn, for `seconds` after `warmupCalls` rounds. */
export interface AlternateCommand {
  type: "alternate";
  id: number;
  targets: Target[];
  seconds: number;
  warmupCalls: number;
  /** Read stamped tokens (bench/fake-openai.ts "-stamp"). */
  stamps: boolean;
  /** Stop after this many rounds even if time is left. */
  maxRounds?: number;
}

export interface Summary {
  n: number;
  p50: number;
  p99: number;
}

export interface LoopResult {
  target: string;
  inFlight: number;
  /** Calls that ended inside the window. */
  calls: number;
  errors: number;
  firstError?: string;
  reqPerSec: number;
  /** Latency of calls started in the window, ms. */
  latencyMs: Summary;
  ttftMs?: Summary;
  bytesPerCall: number;
  /** CPU µs over the window, per pid name, and "client" for this process. */
  cpuMicros: Record<string, number>;
  windowMicros: number;
}

export interface AlternateResult {
  /** Per target: raw samples, so a caller can pool rounds. */
  byTarget: Record<string, { ttftMs: number[]; tokenLatencyMs: number[]; tokenGapMs: number[]; calls: number; errors: number; firstError?: string }>;
}

interface Prepared {
  target: Target;
  options: http.RequestOptions;
  origin: string;
  body: Buffer;
}

const now = () => performance.now();

/** The client's connections: one keep-alive Agent for HTTP/1.1, one session per origin for HTTP/2. */
class Caller {
  private agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();

  /**
   * New connections for the next run: a socket left idle since the last may be closed by the server
   * (its keep-alive timeout) just as a request goes out on it. Each run opens its own in its warm-up, as h2load does.
   */
  fresh(): void {
    this.agent.destroy();
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  }

  /** The request, built once for a run (after fresh(): the options hold the run's agent). */
  prepare(target: Target): Prepared {
    const url = new URL(target.url);
    const body = target.bodyBase64 ? Buffer.from(target.body, "base64") : Buffer.from(target.body);
    const headers = { ...target.headers, "content-length": String(body.length) };
    const options = { agent: this.agent, method: "POST", host: url.hostname, port: url.port, path: url.pathname, headers };
    return { target, body, origin: url.origin, options };
  }

  call(p: Prepared, stamps = false): Promise<CallResult> {
    return p.target.kind === "grpc-stream" ? this.callGrpc(p, stamps) : this.callHttp(p, stamps);
  }

  close(): void {
    this.agent.destroy();
    for (const s of this.sessions.values()) s.close();
  }

  private callHttp(p: Prepared, stamps: boolean): Promise<CallResult> {
    return new Promise((resolve) => {
      const scan = scanner(p.target.kind, now(), stamps);
      const req = http.request(p.options, (res) => {
        scan.status(String(res.statusCode));
        res.on("data", (chunk: Buffer) => scan.push(chunk, now()));
        res.on("end", () => resolve(scan.end(now())));
        res.on("error", (err) => resolve(scan.fail(err, now())));
      });
      req.on("error", (err) => resolve(scan.fail(err, now())));
      req.end(p.body);
    });
  }

  private session(origin: string): http2.ClientHttp2Session {
    let s = this.sessions.get(origin);
    if (!s || s.closed || s.destroyed) {
      s = http2.connect(origin);
      s.on("error", () => this.sessions.delete(origin));
      this.sessions.set(origin, s);
    }
    return s;
  }

  private callGrpc(p: Prepared, stamps: boolean): Promise<CallResult> {
    return new Promise((resolve) => {
      const scan = scanner(p.target.kind, now(), stamps);
      const stream = this.session(p.origin).request({ ":method": "POST", ":path": p.options.path!, ...p.target.headers });
      stream.on("data", (chunk: Buffer) => scan.push(chunk, now()));
      stream.on("trailers", (trailers) => scan.status(String(trailers["grpc-status"])));
      stream.on("end", () => resolve(scan.end(now())));
      stream.on("error", (err) => resolve(scan.fail(err, now())));
      stream.end(p.body);
    });
  }
}

const sorted = (xs: number[]) => Float64Array.from(xs).sort();
const pct = (s: Float64Array, p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN);
function summary(xs: number[]): Summary {
  const s = sorted(xs);
  return { n: s.length, p50: pct(s, 50), p99: pct(s, 99) };
}

const readCpu = (pids: Record<string, number>) => {
  const out: Record<string, number> = { client: cpuMicros(process.pid), wall: now() * 1000 };
  for (const [name, pid] of Object.entries(pids)) out[name] = cpuMicros(pid);
  return out;
};

async function loop(caller: Caller, c: LoopCommand): Promise<LoopResult> {
  caller.fresh();
  const p = caller.prepare(c.target);
  const latencies: number[] = [];
  const ttfts: number[] = [];
  let [calls, errors, bytes] = [0, 0, 0];
  let firstError: string | undefined;
  const t0 = now();
  const measureFrom = t0 + c.warmupSeconds * 1000;
  const stopAt = measureFrom + c.seconds * 1000;
  // Timers mark the window's edges, so the CPU read covers exactly the calls counted.
  let cpuStart: Record<string, number> = {};
  let cpuEnd: Record<string, number> = {};
  const marks = [setTimeout(() => (cpuStart = readCpu(c.pids)), measureFrom - t0), setTimeout(() => (cpuEnd = readCpu(c.pids)), stopAt - t0)];
  const worker = async () => {
    while (now() < stopAt) {
      const r = await caller.call(p);
      if (!r.ok) {
        errors++;
        firstError ??= r.error;
        continue;
      }
      if (r.end >= measureFrom && r.end <= stopAt) {
        calls++;
        bytes += r.bytes;
      }
      if (r.start >= measureFrom) {
        latencies.push(r.end - r.start);
        if (r.firstContent !== undefined) ttfts.push(r.firstContent - r.start);
      }
    }
  };
  await Promise.all(Array.from({ length: c.inFlight }, worker));
  for (const m of marks) clearTimeout(m);
  // The last call can end in the same turn of the event loop as the window, before its timer runs.
  if (!("client" in cpuEnd)) cpuEnd = readCpu(c.pids);
  const { wall, ...cpu } = Object.fromEntries(Object.keys(cpuEnd).map((k) => [k, cpuEnd[k]! - cpuStart[k]!]));
  return {
    target: c.target.name,
    inFlight: c.inFlight,
    calls,
    errors,
    ...(firstError ? { firstError } : {}),
    reqPerSec: calls / c.seconds,
    latencyMs: summary(latencies),
    ...(ttfts.length ? { ttftMs: summary(ttfts) } : {}),
    bytesPerCall: calls ? bytes / calls : 0,
    cpuMicros: cpu,
    windowMicros: wall!,
  };
}

async function alternate(caller: Caller, c: AlternateCommand): Promise<AlternateResult> {
  caller.fresh();
  const prepared = c.targets.map((t) => caller.prepare(t));
  const byTarget: AlternateResult["byTarget"] = Object.fromEntries(
    c.targets.map((t) => [t.name, { ttftMs: [], tokenLatencyMs: [], tokenGapMs: [], calls: 0, errors: 0 }]),
  );
  for (let i = 0; i < c.warmupCalls; i++) for (const p of prepared) await caller.call(p, c.stamps);
  const stopAt = now() + c.seconds * 1000;
  for (let round = 0; now() < stopAt && round < (c.maxRounds ?? Infinity); round++) {
    // Who goes first changes every round, so neither side always follows the other.
    for (let k = 0; k < prepared.length; k++) {
      const p = prepared[(k + round) % prepared.length]!;
      const r = await caller.call(p, c.stamps);
      const into = byTarget[p.target.name]!;
      if (!r.ok) {
        into.errors++;
        into.firstError ??= r.error;
        continue;
      }
      into.calls++;
      if (r.firstContent !== undefined) into.ttftMs.push(r.firstContent - r.start);
      into.tokenLatencyMs.push(...r.tokenLatencyMs);
      into.tokenGapMs.push(...r.tokenGapMs);
    }
  }
  return { byTarget };
}

const caller = new Caller();
process.on("message", (m: LoopCommand | AlternateCommand | { type: "exit" }) => {
  if (m.type === "exit") {
    caller.close();
    process.disconnect();
    return;
  }
  const run = m.type === "loop" ? loop(caller, m) : alternate(caller, m);
  run.then(
    (result) => process.send!({ id: m.id, result }),
    (err: unknown) => process.send!({ id: m.id, error: (err as Error).stack ?? String(err) }),
  );
});
process.send!({ ready: true });
