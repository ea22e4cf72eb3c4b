import { resolve } from "node:path";
import type { Logger } from "pino";
import { AgentRegistry } from "./agents/registry.ts";
import type { AgentDefinition } from "./agents/types.ts";
import { ConfigError } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import { Executor } from "./executor/executor.ts";
import { MemoryEventBus } from "./events/memory-bus.ts";
import { AgentService } from "./gen/qingyu/agent/v1/agent_pb.ts";
import { EventService } from "./gen/qingyu/agent/v1/event_pb.ts";
import { SessionService } from "./gen/qingyu/agent/v1/session_pb.ts";
import { Health } from "./gen/grpc/health/v1/health_pb.ts";
import type { PluginDefinition } from "./plugins/define.ts";
import { builtinPlugins } from "./plugins/builtin/index.ts";
import { discoverPlugins, instantiate, type HostBase } from "./plugins/loader.ts";
import type { Middleware } from "./pipeline/types.ts";
import type { LlmProvider } from "./providers/types.ts";
import { agentService } from "./services/agent-service.ts";
import { eventService } from "./services/event-service.ts";
import { HealthState, healthService } from "./services/health-service.ts";
import { sessionService } from "./services/session-service.ts";
import { SessionManager } from "./sessions/manager.ts";
import { MemorySessionStore } from "./sessions/memory-store.ts";
import type { SessionStore } from "./sessions/types.ts";
import { CallTracker } from "./transport/call-tracker.ts";
import { GrpcTransport } from "./transport/grpc-server.ts";
import { HttpTransport } from "./transport/http-server.ts";
import { hosted } from "./transport/types.ts";

/** What the app is built from. */
export interface AppOptions {
  config: Config;
  /** Where relative paths in the config resolve from. */
  baseDir: string;
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
}

/** The ports actually bound. */
export interface BoundPorts {
  grpcPort: number;
  httpPort: number | undefined;
}

/** The whole server, wired in one place. */
export class App {
  private constructor(
    private readonly options: AppOptions,
    private readonly grpc: GrpcTransport,
    private readonly http: HttpTransport | undefined,
    private readonly tracker: CallTracker,
    private readonly health: HealthState,
    private readonly store: SessionStore,
    private readonly plugins: readonly PluginDefinition[],
  ) {}

  /** Loads plugins and builds every layer; throws ConfigError or PluginError when it cannot. */
  static async create(options: AppOptions): Promise<App> {
    const { config, env, log, baseDir } = options;
    const events = new MemoryEventBus(log);
    const agents = new AgentRegistry(enabledAgents(config, env, log));
    const catalog = await discoverPlugins(builtinPlugins, config.plugins.dirs.map((d) => resolve(baseDir, d)));
    const base: HostBase = { events, agents, env, logger: log };
    const used = new Set<PluginDefinition>();

    // Only providers some enabled agent uses are set up: an unused openai entry must not demand a key.
    const providers = new Map<string, LlmProvider>();
    for (const agent of agents.list()) {
      if (providers.has(agent.provider)) continue;
      const ref = config.providers[agent.provider];
      if (!ref) {
        const i = config.agents.findIndex((a) => a.id === agent.id);
        throw new ConfigError(`invalid config:\n  agents.${i}.provider: no provider named "${agent.provider}" (configured: ${Object.keys(config.providers).join(", ") || "none"})`);
      }
      const { product, entry } = await instantiate(catalog, ref, "llm-provider", `providers.${agent.provider}`, base);
      providers.set(agent.provider, product);
      used.add(entry.definition);
    }

    const middleware: Middleware[] = [];
    for (const [i, ref] of config.pipeline.entries()) {
      if (typeof ref !== "string" && !ref.enabled) continue;
      const { product, entry } = await instantiate(catalog, ref, "middleware", `pipeline.${i}`, base);
      middleware.push(product);
      used.add(entry.definition);
    }
    for (const [i, ref] of config.eventHandlers.entries()) {
      if (typeof ref !== "string" && !ref.enabled) continue;
      const { product: handler, entry } = await instantiate(catalog, ref, "event-handler", `eventHandlers.${i}`, base);
      events.subscribe(handler.types, (event) => handler.handle(event));
      used.add(entry.definition);
    }

    const store = new MemorySessionStore(config.sessions.sweepIntervalMs);
    const sessions = new SessionManager(store, events, config.sessions);
    const executor = new Executor({ agents, providers, middleware, sessions, events, retry: config.executor.retry, log });
    const health = new HealthState([AgentService.typeName, SessionService.typeName, EventService.typeName]);
    const services = [
      hosted(AgentService, agentService(executor, agents, config.executor.batch)),
      hosted(SessionService, sessionService(sessions, agents)),
      hosted(EventService, eventService(events), { longLived: true }),
      hosted(Health, healthService(health), { servedWhileDraining: true, longLived: true }),
    ];
    const tracker = new CallTracker();
    const grpc = new GrpcTransport(services, tracker, log);
    const http = config.server.httpPort === null ? undefined : new HttpTransport(services, tracker, log);
    return new App(options, grpc, http, tracker, health, store, [...used]);
  }

  async start(): Promise<BoundPorts> {
    const { host, port, httpPort } = this.options.config.server;
    const grpcPort = await this.grpc.listen(host, port);
    const boundHttp = this.http && httpPort !== null ? await this.http.listen(host, httpPort) : undefined;
    return { grpcPort, httpPort: boundHttp };
  }

  /**
   * Graceful stop: health turns NOT_SERVING and new calls get UNAVAILABLE at
   * once; calls in flight get the grace period, then are cancelled.
   */
  async shutdown(): Promise<void> {
    const { log, config } = this.options;
    this.health.setAll(false);
    this.tracker.drain();
    log.info({ inFlight: this.tracker.inFlight, graceMs: config.server.shutdownGraceMs }, "draining");
    if (!(await this.tracker.waitIdle(config.server.shutdownGraceMs))) {
      log.warn({ inFlight: this.tracker.inFlight }, "grace period over; cancelling calls in flight");
      this.tracker.cancelAll();
      await this.tracker.waitIdle(1000);
    }
    this.tracker.closeLongLived();
    await Promise.all([this.grpc.close(1000), this.http?.close(1000)]);
    for (const plugin of this.plugins) {
      try {
        await plugin.dispose?.();
      } catch (err) {
        log.error({ err, plugin: plugin.name }, "plugin dispose failed");
      }
    }
    await this.store.close();
  }
}

function enabledAgents(config: Config, env: AppOptions["env"], log: Logger): AgentDefinition[] {
  const agents: AgentDefinition[] = [];
  for (const a of config.agents) {
    const missing = a.requireEnv.filter((name) => !env[name]);
    if (missing.length) {
      log.info({ agent: a.id, missing }, "agent left out: required environment variables are not set");
      continue;
    }
    if (agents.some((b) => b.id === a.id)) throw new ConfigError(`invalid config:\n  agents: agent id "${a.id}" appears twice`);
    agents.push({ id: a.id, description: a.description, provider: a.provider, model: a.model, systemPrompt: a.systemPrompt, defaults: a.defaults });
  }
  return agents;
}
