import { type AgentDefinition, defineTool, type LlmProvider, type Middleware, type Tool } from "@qingyu/plugin-api";
import { z } from "zod";
import pino, { type Logger } from "pino";
import { AgentRegistry } from "../../src/agents/registry.ts";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import { Executor } from "../../src/executor/executor.ts";
import type { Admission } from "../../src/pipeline/admission.ts";
import type { RetryPolicy } from "../../src/executor/retry.ts";
import { SessionManager } from "../../src/sessions/manager.ts";
import { MemorySessionStore } from "../../src/sessions/memory-store.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { ToolCatalog } from "../../src/tools/catalog.ts";

/** A tool for step-loop tests: adds two numbers, `{ sum }`. */
export const add = defineTool({
  name: "add",
  description: "Adds two numbers",
  input: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }: { a: number; b: number }) => ({ sum: a + b }),
});

/** The agent "helper" on the provider named "model", with every tool; `overrides` change any of it. */
export function agent(overrides: Partial<AgentDefinition> = {}): AgentDefinition {
  return { id: "helper", description: "", provider: "model", model: "m", systemPrompt: "", defaults: {}, tools: ["*"], ...overrides };
}

/** What an executor under test is built from; everything else has the defaults below. */
export interface TestExecutorParts {
  agents: AgentDefinition[];
  /** By provider name (the agents' `provider`). */
  providers: Record<string, LlmProvider>;
  middleware?: Middleware[];
  retry?: RetryPolicy;
  /** A memory store when not given. The caller closes it (`store` in the result). */
  store?: SessionStore;
  log?: Logger;
  /** The generation's admit hooks, as assemble.ts passes them (auth configured). */
  admission?: Admission;
  /** In-process tools, as tool plugins give them; agents name them in `tools`. */
  tools?: Tool[];
  /** tools.maxOutputBytes and tools.abandonAfterMs. */
  toolLimits?: { maxOutputBytes: number; abandonAfterMs: number };
}

/** An Executor wired as the server wires one, over an in-process event bus and session manager. */
export function testExecutor(parts: TestExecutorParts) {
  const log = parts.log ?? pino({ level: "silent" });
  const store = parts.store ?? new MemorySessionStore(60_000);
  const events = new MemoryEventBus(log);
  const sessions = new SessionManager(store, events, {
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
  const executor = new Executor({
    agents: new AgentRegistry(parts.agents),
    providers: new Map(Object.entries(parts.providers)),
    middleware: parts.middleware ?? [],
    sessions,
    events,
    retry: parts.retry ?? { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1000 },
    log,
    ...(parts.admission ? { admission: parts.admission, authenticated: parts.admission.guarded } : {}),
    ...(parts.tools ? { tools: new ToolCatalog(parts.tools.map((tool) => ({ tool, source: "test" }))) } : {}),
    ...(parts.toolLimits ? { toolLimits: parts.toolLimits } : {}),
  });
  return { executor, sessions, events, store };
}
