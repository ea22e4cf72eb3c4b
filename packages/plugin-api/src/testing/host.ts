import type { AgentCatalog, AgentDefinition } from "../agents.ts";
import type { PluginCounter, PluginHistogram, PluginMeter, PluginSpan, PluginTracer } from "../observability.ts";
import { pluginShapeProblem } from "../definition.ts";
import type { PluginDefinition, PluginHost, PluginKind, PluginProducts } from "../plugin.ts";
import type { LlmProvider } from "../provider.ts";
import { TestEventBus } from "./events.ts";
import { TestLogger, type LogLine } from "./logger.ts";
import { validateOptions } from "../options.ts";

/** The agent a test host configures unless told otherwise (the server's default `echo` agent). */
export const testAgent: AgentDefinition = Object.freeze({ id: "echo", description: "", provider: "echo", model: "echo-1", systemPrompt: "", defaults: {} });

/** What a test may give the host instead of the defaults. */
export interface TestHostOverrides {
  /** `host.env` ({} by default: nothing leaks in from the environment). */
  env?: Record<string, string | undefined>;
  /** The agents catalog ([testAgent] by default). */
  agents?: readonly AgentDefinition[];
  /** What `host.provider(name)` returns; other names reject. */
  providers?: Record<string, LlmProvider>;
  /** What `host.redis()` returns; without it, redis() throws as on a server without Redis. */
  redis?: unknown;
  /** What `host.postgres()` returns; without it, postgres() throws. */
  postgres?: unknown;
  /** `host.resolvePath` (the path unchanged by default). */
  resolvePath?: (path: string) => string;
  /** The logger's level ("trace" by default: every line is recorded). */
  logLevel?: string;
  tracer?: PluginTracer;
  meter?: PluginMeter;
}

/** The host a plugin was set up with: its logger records lines, its bus records events. */
export interface TestHost<Options = Record<string, unknown>> extends PluginHost<Options> {
  readonly logger: TestLogger;
  readonly events: TestEventBus;
}

/** A plugin set up by setUp. */
export interface TestPlugin<K extends PluginKind, Options> {
  /** What setup returned: the middleware, event handler or provider. */
  product: PluginProducts[K];
  host: TestHost<Options>;
  /** The plugin's log lines (host.logger.lines), each with `plugin: <name>`. */
  logs: LogLine[];
  /** What the plugin published (host.events.published). */
  events: TestEventBus["published"];
  /** Disposes the product, then the plugin, as the server does at shutdown. */
  dispose(): Promise<void>;
}

/**
 * Sets a plugin up as the server does, without a server: its definition
 * checked, its options (`{}` when none are given) through its own Standard
 * Schema — invalid ones throw InvalidOptionsError listing each issue as
 * `options.<path>: <message>` — then `setup` with a test host.
 */
export async function setUp<K extends PluginKind, Options>(
  plugin: PluginDefinition<K, Options>,
  options?: unknown,
  overrides: TestHostOverrides = {},
): Promise<TestPlugin<K, Options>> {
  const problem = pluginShapeProblem(plugin);
  if (problem) throw new TypeError(problem);
  const validated = await validateOptions(plugin, options);
  const host = testHost(plugin.name, validated, overrides);
  const product = await plugin.setup(host);
  return {
    product,
    host,
    logs: host.logger.lines,
    events: host.events.published,
    async dispose() {
      try {
        // A tool plugin may return a list of tools, which has nothing to release.
        if (!Array.isArray(product)) await (product as { dispose?: () => unknown }).dispose?.();
      } finally {
        await plugin.dispose?.();
      }
    },
  };
}

/** A host for one plugin, for tests that call `setup` themselves. */
export function testHost<Options>(pluginName: string, options: Options, overrides: TestHostOverrides = {}): TestHost<Options> {
  const logger = new TestLogger(overrides.logLevel).child({ plugin: pluginName });
  const agents = overrides.agents ?? [testAgent];
  const catalog: AgentCatalog = { get: (id) => agents.find((a) => a.id === id), list: () => [...agents] };
  return {
    options,
    logger,
    events: new TestEventBus(logger),
    agents: catalog,
    env: overrides.env ?? {},
    redis<C>(): C {
      if (overrides.redis === undefined) throw new Error("no Redis is configured (give the test host `redis`)");
      return overrides.redis as C;
    },
    postgres<P>(): P {
      if (overrides.postgres === undefined) throw new Error("no PostgreSQL is configured (give the test host `postgres`)");
      return overrides.postgres as P;
    },
    async provider(name) {
      const provider = overrides.providers?.[name];
      if (!provider) throw new Error(`no provider "${name}" is configured (give the test host \`providers\`)`);
      return provider;
    },
    resolvePath: overrides.resolvePath ?? ((path) => path),
    tracer: overrides.tracer ?? noopTracer,
    meter: overrides.meter ?? noopMeter,
  };
}

const noopSpan: PluginSpan = {
  setAttribute: () => noopSpan,
  setAttributes: () => noopSpan,
  addEvent: () => noopSpan,
  recordException: () => undefined,
  setStatus: () => noopSpan,
  end: () => undefined,
  isRecording: () => false,
};

/** A tracer whose spans record nothing. */
export const noopTracer: PluginTracer = {
  startSpan: () => noopSpan,
  startActiveSpan: (_name, fn) => fn(noopSpan) as ReturnType<typeof fn>,
};

const noopCounter: PluginCounter & PluginHistogram = { add: () => undefined, record: () => undefined };

/** A meter whose instruments record nothing. */
export const noopMeter: PluginMeter = {
  createCounter: () => noopCounter,
  createUpDownCounter: () => noopCounter,
  createHistogram: () => noopCounter,
};
