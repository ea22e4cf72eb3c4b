// `node --import tsx bench/mcp-roundtrip.ts`: issue #16's MCP stdio target —
// a tool call through the runtime's McpToolSource within 1.5× the time of the
// bare @modelcontextprotocol/client Client calling the same server. Two
// processes of the test fixture server (test/fixtures/mcp/server.mjs) over
// stdio, one per client; one call at a time, alternating between the two (the
// first of each pair swapped every pair) so both see the same machine; each
// call timed from the call to its answer. The source's tool is called as the
// step loop calls it (its execute, with a fresh signal per call, progress
// reporting on); the bare client makes the plain `callTool`. Besides the time,
// this process's CPU during each call (one call at a time, so it is that
// call's client side), which varies less with the machine's load.
// Prints one JSON line (McpRoundTripResult) on stdout. BENCH_MCP_SECONDS (default 4) sets the measured time.
import { Client } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import type { Tool, ToolContext } from "@qingyu/plugin-api";
import pino from "pino";
import { join } from "node:path";
import { McpServerSchema } from "../src/tools/mcp/config.ts";
import { McpToolSource } from "../src/tools/mcp/mcp-source.ts";
import { root } from "./children.ts";
import { percentile } from "./grpc-client.ts";

const FIXTURE = join(root, "test/fixtures/mcp/server.mjs");
const SECONDS = Number(process.env.BENCH_MCP_SECONDS ?? "") || 4;
const WARMUP_CALLS = 300;
const ARGS = { text: "hello from the bench" };

/** Per-call times of one client, ms. */
export interface RoundTripSummary {
  calls: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** This process's CPU (user + system, all threads) during the calls, per call. */
  cpuMicrosPerCall: number;
}

export interface McpRoundTripResult {
  source: RoundTripSummary;
  bare: RoundTripSummary;
  errors: number;
}

const silent = pino({ level: "silent" });

function toolContext(): ToolContext {
  return {
    runId: "bench",
    toolCallId: "call",
    idempotencyKey: "bench:call",
    attempt: 1,
    signal: new AbortController().signal,
    deadline: undefined,
    agentId: "bench",
    userId: "bench",
    principal: undefined,
    sessionId: "",
    logger: silent,
    progress: () => {},
  };
}

const summary = (samples: number[], cpuMicros: number): RoundTripSummary => {
  const sorted = Float64Array.from(samples).sort();
  return {
    calls: sorted.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
    cpuMicrosPerCall: cpuMicros / samples.length,
  };
};

async function main(): Promise<void> {
  const source = new McpToolSource("fx", McpServerSchema.parse({ command: process.execPath, args: [FIXTURE] }), { log: silent, baseDir: root });
  const bare = new Client({ name: "bench-bare", version: "1" }, { capabilities: {} });
  try {
    const tools = await source.list(AbortSignal.timeout(30_000));
    const tool = tools.find((t: Tool) => t.name === "fx__echo");
    if (!tool) throw new Error(`McpToolSource listed no fx__echo (it listed: ${tools.map((t) => t.name).join(", ")})`);
    await bare.connect(new StdioClientTransport({ command: process.execPath, args: [FIXTURE], stderr: "inherit" }));

    const viaSource = async (): Promise<void> => {
      const out = await tool.execute(ARGS, toolContext());
      if (out !== ARGS.text) throw new Error(`McpToolSource answered ${JSON.stringify(out)}`);
    };
    const viaBare = async (): Promise<void> => {
      const out = await bare.callTool({ name: "echo", arguments: ARGS });
      const first = (out.content as { type: string; text?: string }[] | undefined)?.[0];
      if (out.isError || first?.text !== ARGS.text) throw new Error(`the bare client got ${JSON.stringify(out)}`);
    };
    for (let i = 0; i < WARMUP_CALLS; i++) await Promise.all([viaSource(), viaBare()]);

    const times = { source: [] as number[], bare: [] as number[] };
    const cpu = { source: 0, bare: 0 };
    let errors = 0;
    const timed = async (which: keyof typeof times, run: () => Promise<void>) => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      try {
        await run();
        const t = performance.now() - t0;
        const c = process.cpuUsage(c0);
        times[which].push(t);
        cpu[which] += c.user + c.system;
      } catch (err) {
        if (++errors === 1) process.stderr.write(`mcp-roundtrip: ${which} call failed: ${(err as Error).message}\n`);
        if (errors > 10) throw err;
      }
    };
    const stopAt = performance.now() + SECONDS * 1000;
    for (let pair = 0; performance.now() < stopAt; pair++) {
      if (pair % 2) {
        await timed("bare", viaBare);
        await timed("source", viaSource);
      } else {
        await timed("source", viaSource);
        await timed("bare", viaBare);
      }
    }
    const result: McpRoundTripResult = { source: summary(times.source, cpu.source), bare: summary(times.bare, cpu.bare), errors };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await Promise.all([source.dispose(), bare.close()]);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`mcp-roundtrip failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
