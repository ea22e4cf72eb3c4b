// `node --import tsx bench/tool-dispatch.ts`: issue #16's tool dispatch
// overhead (loop + argument check + span creation with tracing off) per tool
// call, in process: the Executor wired as the server wires it (no middleware,
// memory sessions, telemetry disabled, a logger at info) runs a call whose
// model asks for N calls of the in-process bench_const tool in one step, then
// answers, and a call whose model answers at once (0 calls). Per tool call:
// (CPU of the N-call run − CPU of the 0-call run) / N, so it also carries 1/N
// of the second model step. The "marginal" figure, (N-call − 1-call) / (N − 1),
// leaves that step out.
//
// The model is a provider that streams precomputed chunks (each call as an id
// and name fragment, an arguments fragment, then the complete call, as the
// openai provider emits them), so the figures are the runtime's and not a
// model's; the same runs with the echo provider are given as context (its
// script parsing and longer final answer grow with N too).
//
// Blocks of runs alternate between the kinds, the order rotated each repeat;
// each repeat's figures are taken within it and the medians over repeats
// reported. Prints one JSON line (ToolDispatchResult) on stdout.
// BENCH_TOOLS_REPEATS (default 9) sets the repeats.
import type { AgentDefinition, LlmProvider, ProviderChunk, ProviderRequest } from "@qingyu/plugin-api";
import pino from "pino";
import { Writable } from "node:stream";
import { AgentRegistry } from "../src/agents/registry.ts";
import { MemoryEventBus } from "../src/events/memory-bus.ts";
import type { CallInfo, ExecuteInput } from "../src/executor/context.ts";
import { Executor } from "../src/executor/executor.ts";
import echoPlugin from "../src/plugins/builtin/echo.ts";
import { SessionManager } from "../src/sessions/manager.ts";
import { MemorySessionStore } from "../src/sessions/memory-store.ts";
import { Telemetry } from "../src/telemetry/setup.ts";
import { ToolCatalog } from "../src/tools/catalog.ts";
import { CONST_ANSWER, CONST_TOOL, constTool } from "./const-tool.ts";
import { median } from "./report.ts";

/** Tool calls in the model's first step: the default cap on calls running at once (limits.maxParallelTools). */
export const DISPATCH_CALLS = 8;
const ARGS = '{"city":"Lima"}';
const BLOCK_SECONDS = 0.1;
const REPEATS = Number(process.env.BENCH_TOOLS_REPEATS ?? "") || 9;

/** Medians over repeats, µs of CPU. */
export interface ToolDispatchResult {
  calls: number;
  repeats: number;
  /** Per provider: µs of CPU per run with 0, 1 and N tool calls, and the per-call figures. */
  fixed: DispatchFigures;
  echo: DispatchFigures;
}

export interface DispatchFigures {
  run0: number;
  run1: number;
  runN: number;
  /** (runN − run0) / N: the target's figure. */
  perCall: number;
  /** (runN − run1) / (N − 1): one more call in a step that already has one. */
  marginal: number;
  /** The per-call figure of each repeat, for the spread. */
  perCallRepeats: number[];
}

/** A model that streams precomputed chunks: `calls <n>` asks for n tool calls in step 1; after tool results, or for `calls 0`, a short answer. */
function fixedModel(): LlmProvider {
  const answer: ProviderChunk[] = [
    { type: "delta", text: "done" },
    { type: "finish", finishReason: "stop", usage: { inputTokens: 4, outputTokens: 1 } },
  ];
  const step1 = (n: number): ProviderChunk[] => {
    const ids = Array.from({ length: n }, (_, i) => `call_${i}`);
    return [
      ...ids.flatMap((id, index): ProviderChunk[] => [
        { type: "tool_call_delta", index, id, name: CONST_TOOL, argumentsDelta: "" },
        { type: "tool_call_delta", index, argumentsDelta: ARGS },
      ]),
      ...ids.map((id, index): ProviderChunk => ({ type: "tool_call", index, call: { id, name: CONST_TOOL, arguments: ARGS } })),
      { type: "finish", finishReason: "tool_calls", usage: { inputTokens: 4, outputTokens: n } },
    ];
  };
  const byTask = new Map([0, 1, DISPATCH_CALLS].map((n) => [`calls ${n}`, n ? step1(n) : answer]));
  return {
    capabilities: { tools: true },
    async *stream(req: ProviderRequest): AsyncIterable<ProviderChunk> {
      const last = req.messages.at(-1)!;
      const chunks = last.role === "tool" ? answer : byTask.get(last.content);
      if (!chunks) throw new Error(`fixed model: no script for ${JSON.stringify(last.content)}`);
      // Fresh objects each time, as a provider parsing a response makes them.
      for (const chunk of chunks) yield { ...chunk };
    },
  };
}

function executor(): Executor {
  // At info, as the bench's servers run; nothing is logged per call, but child loggers are made.
  const log = pino({ level: "info" }, new Writable({ write: (_c, _e, done) => done() }));
  const events = new MemoryEventBus(log);
  const sessions = new SessionManager(new MemorySessionStore(60_000), events, {
    historyTokens: 0,
    getMessagesLimit: 200,
    maxCheckpointBytes: 1 << 20,
    checkpointsKept: 20,
    ttlSeconds: 3600,
    maxTtlSeconds: 7200,
    historyMessages: 20,
    defaultPageSize: 10,
    maxPageSize: 100,
  });
  const agent = (id: string, provider: string): AgentDefinition => ({
    id,
    description: "",
    provider,
    model: "m",
    systemPrompt: "",
    defaults: {},
    tools: [CONST_TOOL],
  });
  return new Executor({
    agents: new AgentRegistry([agent("fixed", "fixed"), agent("echo", "echo")]),
    providers: new Map([
      ["fixed", fixedModel()],
      ["echo", (echoPlugin.setup as (host: unknown) => LlmProvider)({ options: { tokenDelayMs: 0 } })],
    ]),
    middleware: [],
    sessions,
    events,
    retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1000 },
    log,
    telemetry: Telemetry.disabled(),
    tools: new ToolCatalog([{ tool: constTool, source: 'tool plugin "bench-const"' }]),
  });
}

type Kind = { provider: "fixed" | "echo"; calls: number };

function inputOf({ provider, calls }: Kind): ExecuteInput {
  const task = provider === "fixed" ? `calls ${calls}` : `${`!call ${CONST_TOOL} ${ARGS}\n`.repeat(calls)}summarise the report`;
  return { agentId: provider, task, sessionId: "", userId: "bench", metadata: {}, options: {} };
}

const call: CallInfo = { signal: new AbortController().signal, header: () => undefined };

/** Runs one call and checks it did what the kind says: every tool call answered, in the steps expected. */
async function runChecked(ex: Executor, kind: Kind): Promise<void> {
  const r = await ex.execute(inputOf(kind), call);
  const ok = r.toolCalls?.length === kind.calls && r.toolCalls.every((c) => c.outcome === "ok" && c.output === JSON.stringify(CONST_ANSWER));
  if (!r.success || !ok || r.steps !== (kind.calls ? 2 : 1))
    throw new Error(`tool-dispatch ${kind.provider} ${kind.calls}: unexpected result ${JSON.stringify(r)}`);
}

/** µs of process CPU per run over `n` runs. */
async function block(ex: Executor, kind: Kind, n: number): Promise<number> {
  const input = inputOf(kind);
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await ex.execute(input, call);
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / n;
}

async function main(): Promise<void> {
  const ex = executor();
  const kinds: Kind[] = (["fixed", "echo"] as const).flatMap((provider) => [0, 1, DISPATCH_CALLS].map((calls) => ({ provider, calls })));
  for (const kind of kinds) await runChecked(ex, kind);
  // Warm-up (JIT, then inline caches) and a block size of about BLOCK_SECONDS per kind.
  const sizes = new Map<Kind, number>();
  for (const kind of kinds) {
    await block(ex, kind, 2000);
    sizes.set(kind, Math.max(100, Math.round((BLOCK_SECONDS * 1e6) / (await block(ex, kind, 1000)))));
  }
  const samples = new Map<Kind, number[]>(kinds.map((k) => [k, []]));
  for (let rep = 0; rep < REPEATS; rep++) {
    for (let i = 0; i < kinds.length; i++) {
      const kind = kinds[(i + rep) % kinds.length]!;
      samples.get(kind)!.push(await block(ex, kind, sizes.get(kind)!));
    }
  }
  for (const kind of kinds) await runChecked(ex, kind);
  const figures = (provider: Kind["provider"]): DispatchFigures => {
    const [s0, s1, sN] = kinds.filter((k) => k.provider === provider).map((k) => samples.get(k)!);
    const perCallRepeats = s0!.map((t0, r) => (sN![r]! - t0) / DISPATCH_CALLS);
    return {
      run0: median(s0!),
      run1: median(s1!),
      runN: median(sN!),
      perCall: median(perCallRepeats),
      marginal: median(s1!.map((t1, r) => (sN![r]! - t1) / (DISPATCH_CALLS - 1))),
      perCallRepeats,
    };
  };
  const result: ToolDispatchResult = { calls: DISPATCH_CALLS, repeats: REPEATS, fixed: figures("fixed"), echo: figures("echo") };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`tool-dispatch failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
