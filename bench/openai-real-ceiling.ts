// The ceiling of bench:openai's unary req/s row: how near the mock's own req/s
// a gRPC server on this machine can get at all. In the same rounds as the mock
// (direct) and our openai path, h2load drives, the same way (one connection, N
// streams), our server with the echo provider (the same process and pipeline,
// no upstream hop) and a bare @grpc/grpc-js server (decode, encode, nothing
// else). If even those stay under the target's ratio, the gap is the machine's
// and grpc-js's, not the openai path's.
import { create, toBinary } from "@bufbuild/protobuf";
import { join } from "node:path";
import { ExecuteRequestSchema } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { startBare, stop, tempDir, type ServerChild } from "./children.ts";
import { EXECUTE } from "./grpc-client.ts";
import { writeGrpcFrame } from "./h2load.ts";
import { h2loadCell, type H2loadCell } from "./openai-real-h2load.ts";
import { task } from "./openai-real-targets.ts";
import { median } from "./report.ts";

/** The echo agent bench:openai's server also has, for this row. */
export const ECHO_AGENT = { id: "echo-ceiling", provider: "echo-ceiling", model: "echo" } as const;
export const ECHO_PROVIDER = { plugin: "echo", options: { tokenDelayMs: 0 } } as const;

const SIDES = ["direct", "openai", "echo", "bare"] as const;
type Side = (typeof SIDES)[number];

export interface CeilingOptions {
  tokens: readonly number[];
  inFlight: number;
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  upstreamUrl: string;
  server: ServerChild;
  upstreamPid: number;
  /** h2load bodies of bench:openai for an answer size: our Execute frame and the upstream's JSON request. */
  bodies: (tokens: number) => { unary: string; directUnary: string };
  log: (line: string) => void;
}

/** One answer size: each side's median req/s and server CPU per call, and its ratio to the mock's. */
export interface CeilingRow {
  tokens: number;
  reqPerSec: Record<Side, number>;
  serverMicrosPerCall: Record<Exclude<Side, "direct">, number>;
  runs: Record<Side, H2loadCell[]>;
}

export async function ceiling(o: CeilingOptions): Promise<CeilingRow[]> {
  const bare = await startBare("bare grpc-js");
  try {
    const rows: CeilingRow[] = [];
    for (const tokens of o.tokens) {
      const echoBody = join(tempDir(), `echo-${tokens}.bin`);
      writeGrpcFrame(echoBody, toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: ECHO_AGENT.id, task: task(tokens) })));
      const b = o.bodies(tokens);
      const grpc = (name: string, port: number, bodyFile: string, pid: number) => ({
        name,
        url: `http://127.0.0.1:${port}${EXECUTE}`,
        h1: false,
        headers: ["content-type: application/grpc", "te: trailers"],
        bodyFile,
        pids: { server: pid },
      });
      // Each side's request; the timing, the same for all, is added where a cell runs.
      type Shape = Omit<Parameters<typeof h2loadCell>[0], "inFlight" | "seconds" | "warmupSeconds">;
      const shapes: Record<Side, Shape> = {
        direct: {
          name: "direct",
          url: `${o.upstreamUrl}/chat/completions`,
          h1: true,
          headers: ["content-type: application/json"],
          bodyFile: b.directUnary,
          pids: { server: o.upstreamPid },
        },
        openai: grpc("openai", o.server.port, b.unary, o.server.pid),
        echo: grpc("echo", o.server.port, echoBody, o.server.pid),
        bare: grpc("bare", bare.port, echoBody, bare.pid),
      };
      const runs = Object.fromEntries(SIDES.map((s) => [s, [] as H2loadCell[]])) as Record<Side, H2loadCell[]>;
      for (let round = 0; round < o.rounds; round++) {
        for (let i = 0; i < SIDES.length; i++) {
          const side = SIDES[(i + round) % SIDES.length]!;
          const run = await h2loadCell({ ...shapes[side], inFlight: o.inFlight, seconds: o.seconds, warmupSeconds: o.warmupSeconds });
          if (run.errors) throw new Error(`ceiling ${side} ${tokens} tokens: ${run.firstError}`);
          runs[side].push(run);
          o.log(`  ceiling r${round} ${side.padEnd(6)} ${tokens}t ${run.reqPerSec.toFixed(0).padStart(6)} req/s`);
        }
        o.server.assertAlive();
      }
      const perCall = (side: Side) => median(runs[side].map((r) => r.cpuMicros.server! / r.calls));
      rows.push({
        tokens,
        reqPerSec: Object.fromEntries(SIDES.map((s) => [s, median(runs[s].map((r) => r.reqPerSec))])) as Record<Side, number>,
        serverMicrosPerCall: { openai: perCall("openai"), echo: perCall("echo"), bare: perCall("bare") },
        runs,
      });
    }
    return rows;
  } finally {
    await stop(bare.child);
  }
}

/** The rows as a markdown table, each side's req/s as a ratio to the mock's. */
export function ceilingTable(rows: readonly CeilingRow[], inFlight: number): string {
  const out = [
    `| unary Execute, gRPC port via h2load, ${inFlight} in flight | tokens | mock, direct (req/s) | ours, openai provider | ours, echo provider (no upstream) | bare grpc-js (no work) |`,
    "|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const cell = (side: Exclude<Side, "direct">) =>
      `${r.reqPerSec[side].toFixed(0)} (${(r.reqPerSec[side] / r.reqPerSec.direct).toFixed(2)}x), ${r.serverMicrosPerCall[side].toFixed(0)} µs/call`;
    out.push(
      `| req/s (ratio to the mock), server CPU per call | ${r.tokens} | ${r.reqPerSec.direct.toFixed(0)} | ${cell("openai")} | ${cell("echo")} | ${cell("bare")} |`,
    );
  }
  return out.join("\n");
}
