import type { EventBus, EventHandler, JsonObject, LlmProvider, Middleware, PluginDefinition, PluginHost } from "@qingyu/plugin-api";
import { resolve } from "node:path";
import type { Logger } from "pino";
import { AgentRegistry, unavailableMessage } from "../agents/registry.ts";
import type { SharedClients } from "../clients/shared.ts";
import { configuredAgents, missingProvider } from "./agents.ts";
import type { Config } from "../config/schema.ts";
import { Executor } from "../executor/executor.ts";
import { OutputSchemas } from "../executor/structured-output.ts";
import { ConfigError } from "../config/load.ts";
import { shownMessage } from "../errors.ts";
import { Admission } from "../pipeline/admission.ts";
import { Telemetry } from "../telemetry/setup.ts";
import type { SessionManager } from "../sessions/manager.ts";
import { Generation, disposeAll, type Disposable } from "./generation.ts";
import { instantiate, refEnabled, type HostBase } from "./instantiate.ts";
import { PluginError, type CatalogEntry } from "./loader.ts";
import { assembleTools } from "./tools.ts";

/** What outlives a reload: shared by every generation. */
export interface SharedRuntime {
  events: EventBus;
  sessions: SessionManager;
  clients: SharedClients;
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
  telemetry?: Telemetry;
}

/**
 * Sets up every plugin the config uses and builds the executor around them.
 * When anything fails, what was already set up is disposed before the error
 * propagates, so a failed reload leaks nothing.
 */
export async function assemble(
  id: number,
  config: Config,
  baseDir: string,
  catalog: ReadonlyMap<string, CatalogEntry>,
  shared: SharedRuntime,
): Promise<Generation> {
  const { events, sessions, clients, env, log } = shared;
  const telemetry = shared.telemetry ?? Telemetry.disabled();
  const { available, unavailable } = configuredAgents(config, env);
  // Warn, at start and at each reload: the agent's callers get FAILED_PRECONDITION until the variable is set.
  for (const agent of unavailable) log.warn({ agent: agent.id, provider: agent.provider, missing: agent.missing }, unavailableMessage(agent));
  const agents = new AgentRegistry(available, unavailable);
  const disposables: Disposable[] = [];
  const definitions = new Set<PluginDefinition>();
  const providers = new Map<string, LlmProvider>();
  const settingUp = new Map<string, Promise<LlmProvider>>();

  // Providers come up on demand so that a fallback provider can ask for the ones it wraps.
  const provider = (name: string, chain: readonly string[]): Promise<LlmProvider> => {
    const known = settingUp.get(name);
    if (known) {
      if (chain.includes(name))
        return Promise.reject(new PluginError(`providers.${name}: providers refer to each other in a cycle (${[...chain, name].join(" → ")})`));
      return known;
    }
    const ref = config.providers[name];
    if (!ref) {
      return Promise.reject(
        new PluginError(
          `${chain.length ? `providers.${chain.at(-1)}` : "providers"}: no provider named "${name}" (configured: ${Object.keys(config.providers).join(", ") || "none"})`,
        ),
      );
    }
    // Registered before setup runs: a setup that asks for providers synchronously must find this one (cycles).
    const promise = Promise.resolve().then(async () => {
      const { product, entry } = await instantiate(catalog, ref, "llm-provider", `providers.${name}`, host([...chain, name]));
      providers.set(name, product);
      definitions.add(entry.definition);
      if (product.dispose) disposables.push({ where: `providers.${name}`, dispose: () => product.dispose!() });
      return product;
    });
    settingUp.set(name, promise);
    return promise;
  };
  const host = (chain: readonly string[]): HostBase =>
    ({
      events,
      agents,
      env,
      logger: log,
      // The contract types these by what the plugin imports (ioredis, pg); ours are those.
      redis: <Client>() => clients.redis() as Client,
      postgres: <Pool>() => clients.postgres() as Pool,
      provider: (name) => provider(name, chain),
      resolvePath: (path) => resolve(baseDir, path),
      tracer: telemetry.tracer,
      meter: telemetry.meter,
    }) satisfies Omit<PluginHost, "options">;

  try {
    // Only providers some enabled agent uses are set up: an unused openai entry must not demand a key.
    for (const agent of agents.list()) {
      const missing = missingProvider(config, agent);
      if (missing) throw missing;
      await provider(agent.provider, []);
    }
    const middleware: Middleware[] = [];
    for (const [i, ref] of config.pipeline.entries()) {
      if (!refEnabled(ref)) continue;
      const { product, entry } = await instantiate(catalog, ref, "middleware", `pipeline.${i}`, host([]));
      middleware.push(product);
      definitions.add(entry.definition);
      if (product.dispose) disposables.push({ where: `pipeline.${i}`, dispose: () => product.dispose!() });
    }
    const handlers: { name: string; handler: EventHandler }[] = [];
    for (const [i, ref] of config.eventHandlers.entries()) {
      if (!refEnabled(ref)) continue;
      const { product, entry } = await instantiate(catalog, ref, "event-handler", `eventHandlers.${i}`, host([]));
      handlers.push({ name: entry.definition.name, handler: product });
      definitions.add(entry.definition);
      if (product.dispose) disposables.push({ where: `eventHandlers.${i}`, dispose: () => product.dispose!() });
    }
    const tools = await assembleTools({ config, baseDir, catalog, host: host([]), log, disposables, definitions }, agents.list(), providers);
    const outputSchemas = new OutputSchemas();
    // An agent's output schema that does not compile stops start-up, not its first call.
    for (const [i, agent] of config.agents.entries()) {
      if (!agent.outputSchema) continue;
      try {
        outputSchemas.compile(agent.outputSchema as JsonObject, "outputSchema");
      } catch (err) {
        throw new ConfigError(`invalid config:\n  agents.${i}.outputSchema: ${shownMessage(err).replace(/^outputSchema: /, "")}`);
      }
    }
    const admission = new Admission(middleware);
    const executor = new Executor({
      agents,
      providers,
      middleware,
      sessions,
      events,
      retry: config.executor.retry,
      log,
      authenticated: admission.guarded,
      admission,
      telemetry,
      tools,
      toolLimits: { maxOutputBytes: config.tools.maxOutputBytes, abandonAfterMs: config.tools.abandonAfterMs },
      outputSchemas,
    });
    return new Generation({
      id,
      config,
      catalog,
      agents,
      executor,
      admission,
      pipeline: middleware.map((m) => m.name),
      providers: Object.fromEntries([...providers.keys()].map((name) => [name, config.providers[name]!.plugin])),
      handlers,
      tools: tools?.names(),
      telemetry,
      disposables,
      definitions,
    });
  } catch (err) {
    // Settle providers still coming up (a fallback's) so their products are disposed too.
    await Promise.allSettled(settingUp.values());
    await disposeAll(log, disposables);
    throw err;
  }
}
