// What the built-in plugins' tool-run tests share: a scripted model, a few tools, and an
// executor wired as the server wires one (test/support/executor.ts) with agent "helper".
import type { AgentDefinition, LlmProvider, Middleware, ProviderChunk, ProviderRequest, RunEvent, TokenUsage, Tool } from "@qingyu/plugin-api";
import { ToolError } from "@qingyu/plugin-api";
import type { CallInfo, ExecuteInput } from "../../../src/executor/context.ts";
import { testExecutor } from "../../support/executor.ts";

/** What the stand-in model does at step n: text, tool calls ([name, argumentsJson]), the usage it reports, or a failure. */
export interface Turn {
  say?: string;
  calls?: [string, string][];
  usage?: TokenUsage;
  fail?: Error;
}

/** A model double that answers its nth request (1-based, over all runs) from `script` and keeps every request. */
export function scriptedModel(script: (n: number) => Turn): LlmProvider & { requests: ProviderRequest[] } {
  const requests: ProviderRequest[] = [];
  return {
    requests,
    capabilities: { tools: true },
    async *stream(req): AsyncIterable<ProviderChunk> {
      requests.push(structuredClone(req));
      const n = requests.length;
      const turn = script(n);
      if (turn.fail) throw turn.fail;
      if (turn.say) for (const word of turn.say.split(/(?<= )/)) yield { type: "delta", text: word };
      const calls = turn.calls ?? [];
      for (const [i, [name, args]] of calls.entries()) yield { type: "tool_call", index: i, call: { id: `c${n}_${i}`, name, arguments: args } };
      yield { type: "finish", finishReason: calls.length ? "tool_calls" : "stop", usage: turn.usage ?? { inputTokens: 10, outputTokens: 2 } };
    },
  };
}

/** A tool adding two numbers, counting its runs. */
export function adder(options: { idempotent?: boolean; name?: string } = {}): Tool & { runs: number } {
  const tool = {
    runs: 0,
    name: options.name ?? "add",
    description: "Adds two numbers",
    inputSchema: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] },
    idempotent: options.idempotent,
    execute(args: unknown) {
      tool.runs++;
      const { a, b } = args as { a: number; b: number };
      return { sum: a + b };
    },
  };
  return tool;
}

/** A tool that always fails with a ToolError (the model sees the error). */
export function failing(options: { idempotent?: boolean } = {}): Tool {
  return {
    name: "fails",
    description: "",
    inputSchema: { type: "object" },
    idempotent: options.idempotent,
    execute: () => {
      throw new ToolError("the account is closed");
    },
  };
}

/** Agent "helper": provider "model", model "m", every tool. */
export function helperAgent(overrides: Partial<AgentDefinition> = {}): AgentDefinition {
  return { id: "helper", description: "", provider: "model", model: "m", systemPrompt: "", defaults: {}, tools: ["*"], ...overrides };
}

/** An executor running agent "helper" (every tool) on `model`, with these middleware. */
export function toolExecutor(model: LlmProvider, tools: Tool[], middleware: Middleware[] = [], agent: Partial<AgentDefinition> = {}) {
  return testExecutor({
    agents: [helperAgent(agent)],
    providers: { model },
    tools,
    middleware,
    toolLimits: { maxOutputBytes: 4096, abandonAfterMs: 200 },
  });
}

export function input(overrides: Partial<ExecuteInput> = {}): ExecuteInput {
  return { agentId: "helper", task: "what is 1+2?", sessionId: "", userId: "alice", metadata: {}, options: {}, ...overrides };
}

export function callInfo(signal: AbortSignal = new AbortController().signal): CallInfo {
  return { signal, header: () => undefined };
}

export async function collect(stream: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of stream) out.push(event);
  return out;
}

/** The result of a collected run. */
export function completed(events: RunEvent[]) {
  const last = events.at(-1);
  if (last?.type !== "completed") throw new Error(`last event is ${last?.type}`);
  return last.result;
}

/** A model that calls add(1,2) at its first step of each run and answers at its second. */
export const addThenAnswer = (n: number): Turn => (n % 2 === 1 ? { say: "Let me add. ", calls: [["add", '{"a":1,"b":2}']] } : { say: "It is 3." });
