import {
  validateOptions,
  type AgentContext,
  type AgentDefinition,
  type AgentRunResult,
  type ChatMessage,
  type LlmProvider,
  type PluginDefinition,
  type PluginHost,
  type PluginKind,
  type PluginProducts,
  type Principal,
  type RunEvent,
} from "@qingyu/plugin-api";
import pino, { type Logger } from "pino";
import { metrics, trace } from "@opentelemetry/api";
import type { Redis } from "ioredis";
import type { Pool } from "pg";
import { AgentRegistry } from "../../src/agents/registry.ts";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";

/** A host's tracer and meter that record nothing: plugin tests do not look at telemetry. */
export const noTelemetry = { tracer: trace.getTracer("test"), meter: metrics.getMeter("test") };

/** The echo agent most plugin tests run against. */
export const testAgent: AgentDefinition = { id: "echo", description: "", provider: "echo", model: "echo-1", systemPrompt: "", defaults: {} };

/** What a test may give the host beyond the defaults (silent logger, the echo agent, no servers). */
export interface HostExtras {
  redis?: Redis;
  postgres?: Pool;
  env?: Record<string, string | undefined>;
  agents?: AgentDefinition[];
  /** A logger whose lines the test reads. */
  logger?: Logger;
  /** What `host.provider(name)` returns, for providers that wrap others. */
  providers?: Record<string, LlmProvider>;
}

/**
 * Sets a plugin up the way the runtime does: options through its own schema,
 * then `setup` with a host. Real Redis / Postgres clients are passed in by
 * tests that need them.
 */
export async function setUpPlugin<K extends PluginKind>(
  plugin: PluginDefinition<K, any>,
  rawOptions: unknown,
  extra: HostExtras = {},
): Promise<PluginProducts[K]> {
  const logger = extra.logger ?? pino({ level: "silent" });
  const options = await validateOptions(plugin as PluginDefinition, rawOptions);
  const host: PluginHost<any> = {
    options,
    logger,
    events: new MemoryEventBus(logger),
    agents: new AgentRegistry(extra.agents ?? [testAgent]),
    env: extra.env ?? {},
    redis: <C>() => {
      if (!extra.redis) throw new Error("no Redis is configured");
      return extra.redis as C;
    },
    postgres: <P>() => {
      if (!extra.postgres) throw new Error("no PostgreSQL is configured");
      return extra.postgres as P;
    },
    provider: async (name) => {
      const provider = extra.providers?.[name];
      if (!provider) throw new Error(`no provider "${name}" in this test host`);
      return provider;
    },
    resolvePath: (p) => p,
    ...noTelemetry,
  };
  return plugin.setup(host) as Promise<PluginProducts[K]>;
}

/** Fields of a test context a test may set. */
export interface ContextInit {
  agentId?: string;
  userId?: string;
  sessionId?: string;
  task?: string;
  headers?: Record<string, string>;
  history?: ChatMessage[];
  principal?: Principal;
  metadata?: Record<string, string>;
  signal?: AbortSignal;
}

/** An AgentContext as the executor builds one, for calling a middleware directly. */
export function agentContext(init: ContextInit = {}): AgentContext {
  const headers = init.headers ?? {};
  return {
    callId: `call-${Math.random().toString(36).slice(2)}`,
    agentId: init.agentId ?? testAgent.id,
    agent: (init.agentId ?? testAgent.id) === testAgent.id ? testAgent : undefined,
    userId: init.userId ?? "",
    requestedUserId: init.userId ?? "",
    principal: init.principal,
    sessionId: init.sessionId ?? "",
    task: init.task ?? "hello",
    metadata: init.metadata ?? {},
    options: {},
    signal: init.signal ?? new AbortController().signal,
    startTime: Date.now(),
    header: (name) => headers[name],
    session: async () => undefined,
    history: async () => init.history ?? [],
    state: new Map(),
  };
}

/** A successful result as the agent call produces it. */
export function runResult(output: string, usage = { inputTokens: 3, outputTokens: 5 }): AgentRunResult {
  return { success: true, output, model: "echo-1", finishReason: "stop", usage, durationMs: 1, metadata: {} };
}

/** A `next` that yields a run like the agent call does, counting how often it ran. */
export function terminal(output = "hi there", chunks = ["hi ", "there"]): { next: () => AsyncIterable<RunEvent>; calls: number } {
  const t = {
    calls: 0,
    next: async function* (): AsyncIterable<RunEvent> {
      t.calls++;
      yield { type: "started", model: "echo-1" };
      for (const text of chunks) yield { type: "delta", text };
      yield { type: "completed", result: runResult(output) };
    },
  };
  return t;
}

/** Every event of a stream. */
export async function collect(stream: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of stream) out.push(event);
  return out;
}

/** A plugin's options as the runtime validates them: the value, or the error lines. */
export async function parseOptions(
  plugin: PluginDefinition<PluginKind, any>,
  raw: unknown,
): Promise<{ success: true; data: any } | { success: false; error: string }> {
  try {
    return { success: true, data: await validateOptions(plugin as PluginDefinition, raw) };
  } catch (err) {
    return { success: false, error: (err as Error).message };
  }
}
