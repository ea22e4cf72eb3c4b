// Issue #16's first speed target: a two-step run with one in-process tool
// costs ≤ 2.2× the server CPU of a one-step call. One server (default
// pipeline, echo provider, tracing off), one agent with the bench_const tool
// (bench/plugins/bench-const.ts), two request bodies driven by h2load in
// alternating runs: the task `!call bench_const {}` + text (echo calls the tool
// in step 1, then answers) and the same text alone (one step). A third body,
// the plain task on the agent without tools, says what having tools costs a
// call that uses none. Server CPU comes from /proc of the server's pid alone.
import { clone, create, toBinary } from "@bufbuild/protobuf";
import { join } from "node:path";
import { ExecuteRequestSchema, ExecuteResponseSchema, type ExecuteResponse } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { startOurs, stop, tempDir } from "./children.ts";
import { CONST_ANSWER, CONST_TOOL } from "./const-tool.ts";
import { client, execute, EXECUTE } from "./grpc-client.ts";
import { h2load, writeGrpcFrame, type H2loadRun } from "./h2load.ts";
import { oursConfig } from "./servers.ts";

/** The agent that has the tool; "echo" (from oursConfig) has none. */
export const TOOLED_AGENT = "tooled";

/** What each h2load body asks for. */
export const STEP_KINDS = ["two-step", "one-step", "no-tools"] as const;
export type StepKind = (typeof STEP_KINDS)[number];

export interface ToolStepsOptions {
  task: string;
  runs: number;
  seconds: number;
  warmupSeconds: number;
  shape: { connections: number; streams: number };
  log: (line: string) => void;
  problems: string[];
}

/** One h2load run of one kind of call, in round `round` (from 0). */
export type ToolStepsRun = H2loadRun & { kind: StepKind; round: number };

/** The phase server's config: the bench's default server plus the tool plugin and an agent that may call it. */
export function toolStepsConfig(): Record<string, unknown> {
  const base = oursConfig();
  return {
    ...base,
    tools: { plugins: ["bench-const"] },
    agents: [...(base.agents as unknown[]), { id: TOOLED_AGENT, provider: "echo", model: "echo-1", tools: [CONST_TOOL] }],
  };
}

function requestOf(kind: StepKind, task: string) {
  if (kind === "two-step") return create(ExecuteRequestSchema, { agentId: TOOLED_AGENT, task: `!call ${CONST_TOOL} {}\n${task}` });
  return create(ExecuteRequestSchema, { agentId: kind === "one-step" ? TOOLED_AGENT : "echo", task });
}

/** Throws unless the answer is what this kind of call must give: the tool ran once, in step 1, and its answer reached the model. */
function checkAnswer(kind: StepKind, task: string, res: ExecuteResponse): void {
  const r = res.result;
  const fail = (why: string) => {
    throw new Error(`tools phase, ${kind} call: ${why}; result: ${JSON.stringify(r, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`);
  };
  if (!r?.success || !r.output.includes(task)) fail("not a successful echo of the task");
  if (kind === "two-step") {
    const [call, ...more] = r!.toolCalls;
    if (r!.steps !== 2 || more.length || call?.name !== CONST_TOOL || call.output !== JSON.stringify(CONST_ANSWER))
      fail("expected 2 steps and one bench_const call");
    if (!r!.output.includes(`[${CONST_TOOL}] ${JSON.stringify(CONST_ANSWER)}`)) fail("the tool's answer is not in the final answer");
  } else if (r!.toolCalls.length || r!.steps > 1) fail("expected one step and no tool call");
}

/** The fewest DATA bytes a real answer of this kind has: its response with every duration zero (a gRPC error has none). */
function minDataBytes(res: ExecuteResponse): number {
  const lean = clone(ExecuteResponseSchema, res);
  if (lean.result) {
    lean.result.durationMs = 0n;
    for (const call of lean.result.toolCalls) call.durationMs = 0n;
  }
  return 5 + toBinary(ExecuteResponseSchema, lean).length;
}

/** Runs the kinds in alternating h2load runs (the order rotated each round) against one server. */
export async function toolStepsPhase(o: ToolStepsOptions): Promise<ToolStepsRun[]> {
  const server = await startOurs("ours-tools", toolStepsConfig());
  try {
    const dir = tempDir();
    const bodies = new Map<StepKind, { file: string; minBytes: number }>();
    const c = client(server.port);
    try {
      for (const kind of STEP_KINDS) {
        const req = requestOf(kind, o.task);
        const res = await execute(c, req);
        checkAnswer(kind, o.task, res);
        const file = join(dir, `${kind}.bin`);
        writeGrpcFrame(file, toBinary(ExecuteRequestSchema, req));
        bodies.set(kind, { file, minBytes: minDataBytes(res) });
      }
    } finally {
      c.close();
    }
    // An unmeasured pass over every kind first: the first run after start-up pays for JIT and heap growth.
    for (const kind of STEP_KINDS) await h2load(server, { ...o.shape, seconds: 1, warmupSeconds: 0, path: EXECUTE, bodyFile: bodies.get(kind)!.file });
    const runs: ToolStepsRun[] = [];
    for (let round = 0; round < o.runs; round++) {
      for (const kind of STEP_KINDS.map((_, i) => STEP_KINDS[(i + round) % STEP_KINDS.length]!)) {
        const body = bodies.get(kind)!;
        const r = await h2load(server, { ...o.shape, seconds: o.seconds, warmupSeconds: o.warmupSeconds, path: EXECUTE, bodyFile: body.file });
        runs.push({ ...r, kind, round });
        o.log(
          `  h2load -c ${o.shape.connections} -m ${o.shape.streams} tools ${kind.padEnd(9)} ${r.reqPerSec.toFixed(0).padStart(6)} req/s  ${r.cpuMicrosPerCall.toFixed(1).padStart(6)} µs CPU/call  ${r.serverCores.toFixed(2)} cores`,
        );
        if (r.failed || r.errored || r.timeout)
          o.problems.push(`tools ${kind}: h2load reported ${r.failed} failed, ${r.errored} errored, ${r.timeout} timeout`);
        if (r.dataBytesPerCall < body.minBytes)
          o.problems.push(`tools ${kind}: only ${r.dataBytesPerCall.toFixed(1)} DATA bytes per call (expected >= ${body.minBytes}): calls are failing`);
        // 64 in flight keeps the server's one event loop busy; well under a core means something else had the CPU.
        if (r.serverCores < 0.7)
          o.problems.push(
            `tools ${kind}, round ${round + 1}: the server used only ${r.serverCores.toFixed(2)} cores: the machine was busy, this round's figures are unreliable`,
          );
      }
    }
    // Still giving the right answers after the load.
    const after = client(server.port);
    try {
      for (const kind of STEP_KINDS) checkAnswer(kind, o.task, await execute(after, requestOf(kind, o.task)));
    } finally {
      after.close();
    }
    return runs;
  } finally {
    await stop(server.child);
  }
}
