// `npm run bench:profile -- <server> [seconds]`: one of the bench's servers under the
// same h2load load as its throughput row (1 connection, 64 in flight), run with
// --cpu-prof, then where its CPU went: self time by function and by package.
// For finding what a missed speed target costs; the .cpuprofile is kept for
// Chrome DevTools. Servers: ours, no-pipeline, full-suite, full-redact, full-traced, observed, openai,
// openai-fast (bench:openai's target row: 20 tokens from an upstream that answers at once).
import { create, toBinary } from "@bufbuild/protobuf";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ExecuteRequestSchema, ExecuteStreamRequestSchema } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { httpPortOf, installCleanup, root, startOurs, stop, stopAll, tempDir, type ServerChild } from "./children.ts";
import { checkExecute, EXECUTE, EXECUTE_STREAM } from "./grpc-client.ts";
import { LightClient } from "./openai-real-client.ts";
import { h2load, writeGrpcFrame } from "./h2load.ts";
import { openaiConfig, startUpstream } from "./openai-phase.ts";
import { AGENTS, connectStream, connectUnary, sse, task } from "./openai-real-targets.ts";
import { FULL_SUITE, FULL_SUITE_REDACT, oursConfig, otlpSink } from "./servers.ts";

const TASK = "summarise the quarterly report for the board in three short sentences";

/** How the server is loaded: unary Execute or ExecuteStream by h2load on the gRPC port, or ExecuteStream by the light client over Connect. */
type Load = "unary" | "grpc-stream" | "connect-unary" | "connect-stream" | "sse-stream";
type Setup = () => Promise<{ config: Record<string, unknown>; env?: Record<string, string>; agent?: string; task?: string; load?: Load }>;

/** The openai provider in front of an upstream that answers at once (bench:openai's fast agent): `tokens` words a call, loaded as `load`. */
function fastOpenai(tokens: number, load: Load = "unary", options?: Record<string, unknown>): Setup {
  return async () => ({
    config: openaiConfig(oursConfig(), (await startUpstream()).url, AGENTS.fast.model, options),
    agent: "openai",
    task: task(tokens),
    load,
  });
}

const traced = async () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: (await otlpSink()).url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" });
const SERVERS: Record<string, Setup> = {
  ours: async () => ({ config: oursConfig() }),
  "no-pipeline": async () => ({ config: oursConfig([]) }),
  "full-suite": async () => ({ config: oursConfig(FULL_SUITE) }),
  "full-redact": async () => ({ config: oursConfig(FULL_SUITE_REDACT) }),
  "full-traced": async () => ({ config: oursConfig(FULL_SUITE), env: { ...(await traced()), OTEL_METRICS_EXPORTER: "none" } }),
  observed: async () => ({ config: { ...oursConfig(), server: { host: "127.0.0.1", shutdownGraceMs: 1000, metricsPort: 0 } }, env: await traced() }),
  openai: async () => ({ config: openaiConfig(oursConfig(), (await startUpstream()).url), agent: "openai" }),
  // The row of bench:openai's targets: an upstream that answers at once, 20 tokens.
  "openai-fast": fastOpenai(20),
  "openai-fast-200": fastOpenai(200),
  // The provider's wholeAnswers: json, one non-streamed completion per unary call.
  "openai-json": fastOpenai(20, "unary", { wholeAnswers: "json" }),
  "openai-json-200": fastOpenai(200, "unary", { wholeAnswers: "json" }),
  // The same answers streamed: bench:openai's "Connect streaming CPU vs the gRPC port's" target, one side each.
  "openai-grpc-stream": fastOpenai(20, "grpc-stream"),
  "openai-sse-stream": fastOpenai(20, "sse-stream"),
  "openai-connect-stream": fastOpenai(20, "connect-stream"),
  // Unary Execute as Connect JSON over HTTP/1.1, bench:openai's "Connect, light" Execute row.
  "openai-connect-unary": fastOpenai(20, "connect-unary"),
};

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives: an npm package, a folder of ours, or the runtime. */
function placeOf(url: string): string {
  if (!url) return "(runtime)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith("node:")) return url.replace(/^node:internal\/(\w+).*/, "node:$1");
  const ours = /\/(src|bench)\/(\w[\w-]*)/.exec(url);
  return ours ? `${ours[1]}/${ours[2]}` : url;
}

function summarise(profile: CpuProfile, calls: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const fn = new Map<string, number>();
  const place = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const where = placeOf(url);
    const key = `${functionName || "(anonymous)"}  ${where}${url && !url.startsWith("node:") ? `:${lineNumber + 1}` : ""}`;
    fn.set(key, (fn.get(key) ?? 0) + dt);
    place.set(where, (place.get(where) ?? 0) + dt);
    total += dt;
  });
  const idle = fn.get("(idle)  (runtime)") ?? 0;
  const busy = total - idle;
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .filter(([k]) => !k.startsWith("(idle)"))
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => `${((100 * us) / busy).toFixed(1).padStart(5)}%  ${(us / calls).toFixed(1).padStart(6)} µs/call  ${k}`)
      .join("\n");
  return `busy ${(busy / 1e6).toFixed(2)} s of ${(total / 1e6).toFixed(2)} s on the thread, ${calls} calls: ${(busy / calls).toFixed(1)} µs/call\n\nby package:\n${top(place, 25)}\n\nby function (self):\n${top(fn, 40)}`;
}

async function main(): Promise<void> {
  const [name = "", secondsArg = "10"] = process.argv.slice(2);
  const setup = SERVERS[name];
  if (!setup) {
    process.stderr.write(`usage: npm run bench:profile -- <${Object.keys(SERVERS).join("|")}> [seconds]\n`);
    process.exit(2);
  }
  installCleanup();
  const { config, env, agent = "echo", task = TASK, load = "unary" } = await setup();
  const dir = tempDir();
  const server = await startOurs(`profile-${name}`, config, env, ["--cpu-prof", `--cpu-prof-dir=${dir}`]);
  await checkExecute(server.port, task, agent);
  const seconds = Number(secondsArg);
  const run = await drive(server, load, agent, task, seconds);
  await stop(server.child);
  await stopAll();
  // One profile per thread, named CPU.<date>.<time>.<pid>.<thread id>.<seq>: thread 0 is the main thread,
  // the others (the span export worker) are summarised by their busy time only.
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  const file = files.find((f) => f.split(".")[4] === "0");
  if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
  const kept = join(root, "bench/results", `${name}.cpuprofile`);
  const text = readFileSync(join(dir, file), "utf8");
  mkdirSync(join(root, "bench/results"), { recursive: true });
  writeFileSync(kept, text);
  // The profile spans start-up and warm-up too; per-call figures divide by every call h2load made.
  const calls = Math.round(run.reqPerSec * (seconds + 1)) + 1;
  console.log(`${name}: ${run.reqPerSec.toFixed(0)} calls/s, ${run.cpuMicrosPerCall.toFixed(1)} µs CPU/call (whole process)\n`);
  console.log(summarise(JSON.parse(text) as CpuProfile, calls));
  for (const other of files.filter((f) => f !== file)) {
    const p = JSON.parse(readFileSync(join(dir, other), "utf8")) as CpuProfile;
    console.log(`\nthread ${other.split(".")[4]}: ${summarise(p, calls).split("\n")[0]}`);
  }
  console.log(`\nprofile: ${kept}`);
}

/** Loads the server for `seconds` after a second's warm-up, 64 calls in flight: calls/s and server CPU per call. */
async function drive(server: ServerChild, load: Load, agent: string, task: string, seconds: number): Promise<{ reqPerSec: number; cpuMicrosPerCall: number }> {
  if (load === "connect-unary" || load === "connect-stream" || load === "sse-stream") {
    const client = await LightClient.start();
    try {
      const endpoints = { upstreamUrl: "", grpcPort: server.port, httpPort: httpPortOf(server) };
      const r = await client.loop({
        target: (load === "sse-stream" ? sse : load === "connect-unary" ? connectUnary : connectStream)(endpoints, 20),
        inFlight: 64,
        seconds,
        warmupSeconds: 1,
        pids: { server: server.child.pid! },
      });
      if (r.errors) throw new Error(`connect stream calls failed: ${r.firstError}`);
      return { reqPerSec: r.reqPerSec, cpuMicrosPerCall: r.cpuMicros.server! / r.calls };
    } finally {
      await client.close();
    }
  }
  const bodyFile = join(tempDir(), "request.bin");
  const schema = load === "unary" ? ExecuteRequestSchema : ExecuteStreamRequestSchema;
  writeGrpcFrame(bodyFile, toBinary(schema, create(schema, { agentId: agent, task })));
  return h2load(server, { connections: 1, streams: 64, seconds, warmupSeconds: 1, path: load === "unary" ? EXECUTE : EXECUTE_STREAM, bodyFile });
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    process.stderr.write(`bench:profile failed: ${(err as Error).stack ?? String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);
