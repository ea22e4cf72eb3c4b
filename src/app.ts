import type { EventBus } from "@qingyu/plugin-api";
import { resolve } from "node:path";
import type { Logger } from "pino";
import { failureDetail, SharedClients } from "./clients/shared.ts";
import type { LoadedConfig } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import { MemoryEventBus } from "./events/memory-bus.ts";
import { RedisEventBus } from "./events/redis-bus.ts";
import { AdminService } from "./gen/qingyu/agent/v1/admin_pb.ts";
import { AgentService } from "./gen/qingyu/agent/v1/agent_pb.ts";
import { EventService } from "./gen/qingyu/agent/v1/event_pb.ts";
import { SessionService } from "./gen/qingyu/agent/v1/session_pb.ts";
import { Health } from "./gen/grpc/health/v1/health_pb.ts";
import { assemble, type SharedRuntime } from "./plugin-host/assemble.ts";
import { builtinPlugins } from "./plugins/builtin/index.ts";
import type { Generation } from "./plugin-host/generation.ts";
import { LiveRuntime, type ReloadOutcome } from "./plugin-host/live-runtime.ts";
import { discoverPlugins, type CatalogEntry, type DiscoveryOptions } from "./plugin-host/loader.ts";
import { adminService } from "./services/admin-service.ts";
import { agentService } from "./services/agent-service.ts";
import { eventService } from "./services/event-service.ts";
import { HealthState, healthService } from "./services/health-service.ts";
import { sessionService } from "./services/session-service.ts";
import { runService } from "./services/run-service.ts";
import { RunService } from "./gen/qingyu/agent/v1/run_pb.ts";
import { workerCount } from "./config/workers-rules.ts";
import { openRunFeed, openRunStore } from "./runs/open-store.ts";
import { RunManager } from "./runs/run-manager.ts";
import { MemoryRunStore } from "./runs/memory-store.ts";
import type { RunStore } from "./runs/types.ts";
import { SessionManager } from "./sessions/manager.ts";
import { openStore } from "./sessions/open-store.ts";
import { StoreMonitor } from "./sessions/store-monitor.ts";
import type { SessionStore } from "./sessions/types.ts";
import { CallTracker } from "./transport/call-tracker.ts";
import { GrpcTransport } from "./transport/grpc-server.ts";
import { HttpTransport } from "./transport/http-server.ts";
import type { Admit } from "./transport/preflight.ts";
import { loadTls } from "./transport/tls.ts";
import { hosted } from "./transport/types.ts";
import { exporterHandler, MetricsServer } from "./telemetry/metrics-server.ts";
import { instrumentService } from "./telemetry/rpc.ts";
import { Telemetry } from "./telemetry/setup.ts";
import { TracedSessionStore } from "./telemetry/traced-store.ts";
import { BatchGate } from "./executor/batch-gate.ts";
import { ErrorEdge } from "./transport/edge-error.ts";
import { OutageLog } from "./transport/outage-log.ts";

// db.system.name of each session store, for its spans.
const DB_SYSTEM = { memory: "memory", redis: "redis", postgres: "postgresql", "redis+postgres": "redis+postgresql" } as const;

/** A dependency the server cannot start without is not there (exit status 1, with the reason). */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StartupError";
  }
}

/** What the app is built from. */
export interface AppOptions {
  config: Config;
  /** Where relative paths in the config resolve from. */
  baseDir: string;
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
  /** Re-reads the config for a reload; without it a reload reloads the plugins with the same config. */
  reread?: () => LoadedConfig;
  /** The process's telemetry (started in main); absent records nothing. */
  telemetry?: Telemetry;
  /** Serve server.metricsPort here (default); false in a worker of server.workers, whose supervisor serves every worker's. */
  serveMetrics?: boolean;
}

/** Every plugin the config can use: built-ins, plugin directories, npm packages. */
export function discoverFor(config: Config, baseDir: string, bust?: string, onError?: DiscoveryOptions["onError"]): Promise<Map<string, CatalogEntry>> {
  const { dirs, packages, disabled } = config.plugins;
  return discoverPlugins(
    builtinPlugins,
    dirs.map((d) => resolve(baseDir, d)),
    { packages, disabled, baseDir, bust, onError },
  );
}

/** The ports actually bound. */
export interface BoundPorts {
  grpcPort: number;
  httpPort: number | undefined;
  metricsPort: number | undefined;
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
    private readonly live: LiveRuntime,
    private readonly clients: SharedClients,
    private readonly monitor: StoreMonitor | undefined,
    private readonly metrics: MetricsServer | undefined,
    private readonly events: EventBus,
    private readonly runs: RunManager,
    private readonly runStore: RunStore,
  ) {}

  /** Loads plugins and builds every layer; throws ConfigError or PluginError when it cannot. */
  static async create(options: AppOptions): Promise<App> {
    const { config, env, log, baseDir } = options;
    // First: a bad certificate file is a config error (exit 2), found before anything is opened.
    const transport = { limits: config.server.limits, tls: loadTls(config.server.tls, baseDir) };
    const telemetry = options.telemetry ?? Telemetry.disabled();
    const clients = await SharedClients.open(config, log);
    const events: EventBus =
      config.events.bus === "redis"
        ? new RedisEventBus(clients.redis(), log, {
            keyPrefix: config.events.keyPrefix,
            maxLen: config.events.maxLen,
            maxEventBytes: config.events.maxEventBytes,
            types: config.events.sharedTypes,
          })
        : new MemoryEventBus(log, { maxEventBytes: config.events.maxEventBytes });
    let store: SessionStore;
    try {
      store = await openStore(config.sessions, clients, log);
      if (telemetry.tracing) store = new TracedSessionStore(store, telemetry.tracer, DB_SYSTEM[config.sessions.store]);
    } catch (err) {
      await clients.close();
      throw new StartupError(`cannot open the ${config.sessions.store} session store: ${failureDetail(err)}`, { cause: err });
    }
    const sessions = new SessionManager(store, events, config.sessions);
    let runStore: RunStore;
    try {
      runStore = await openRunStore(config, clients, log);
    } catch (err) {
      await Promise.all([clients.close(), store.close()]);
      throw new StartupError(`cannot open the runs journal: ${failureDetail(err)}`, { cause: err });
    }
    const shared: SharedRuntime = { events, sessions, clients, env, log, telemetry };
    let first: Generation;
    try {
      first = await assemble(1, config, baseDir, await discoverFor(config, baseDir), shared);
    } catch (err) {
      await Promise.all([clients.close(), store.close(), runStore.close()]);
      throw err;
    }
    const load = async (id: number) => {
      const next = options.reread ? options.reread() : { config, baseDir };
      // A fresh import of every plugin file, so edited files take effect.
      const catalog = await discoverFor(next.config, next.baseDir, `generation=${id}`);
      return assemble(id, next.config, next.baseDir, catalog, shared);
    };
    const live = new LiveRuntime(first, load, events, log);
    const runs = new RunManager({
      store: runStore,
      live,
      sessions,
      events,
      log: log.child({ component: "runs" }),
      policy: config.runs,
      feed: await openRunFeed(config, clients, log),
      handOver: !(runStore instanceof MemoryRunStore),
      workers: workerCount(config.server.workers),
    });
    const health = new HealthState([AgentService.typeName, SessionService.typeName, EventService.typeName, AdminService.typeName, RunService.typeName]);
    // One per server: both ports map failures the same way and share one throttled outage log.
    const edge = new ErrorEdge(log, new OutageLog(log, 30_000));
    const services = [
      // A server span and the RPC metrics per call; health probes are left out (they would drown the rest).
      ...[
        hosted(AgentService, agentService(live, new BatchGate(config.executor.batch), edge)),
        hosted(SessionService, sessionService(sessions, live)),
        hosted(EventService, eventService(events, live, { maxEvents: config.events.subscriberMaxEvents, maxBytes: config.events.subscriberMaxBytes }), {
          longLived: true,
        }),
        hosted(AdminService, adminService(live)),
        // Watching a run may last as long as the run: it is long-lived, like a subscription.
        hosted(RunService, runService(runs, live), { longLived: true }),
      ].map((s) => (telemetry.recording ? instrumentService(s, telemetry) : s)),
      hosted(Health, healthService(health), { servedWhileDraining: true, longLived: true }),
    ];
    const tracker = new CallTracker();
    // Auth on headers, before a request is decoded; health answers load balancers without credentials.
    const admit: Admit = (call, service, method) => {
      const { admission } = live.current.parts;
      return admission.guarded && service !== Health.typeName ? admission.admit(call, service, method) : undefined;
    };
    const served = { ...transport, admit, reflection: config.server.reflection, edge };
    const grpc = new GrpcTransport(services, tracker, log, served);
    const http = config.server.httpPort === null ? undefined : new HttpTransport(services, tracker, log, served);
    // The memory store is always there; the others are watched so readiness tells the truth.
    const monitor = config.sessions.store === "memory" ? undefined : new StoreMonitor(store, health, config.sessions.healthCheckIntervalMs, log);
    const metrics =
      config.server.metricsPort !== null && telemetry.prometheus && options.serveMetrics !== false
        ? new MetricsServer(exporterHandler(telemetry.prometheus))
        : undefined;
    return new App(options, grpc, http, tracker, health, store, live, clients, monitor, metrics, events, runs, runStore);
  }

  /** Re-reads config and plugins (SIGHUP, AdminService.Reload); rejects and keeps the running ones when they fail. */
  reload(): Promise<ReloadOutcome> {
    return this.live.reload();
  }

  async start(): Promise<BoundPorts> {
    const { host, port, httpPort, metricsPort } = this.options.config.server;
    await this.monitor?.start();
    // Reading other processes' events starts before the first subscriber can arrive; a Redis that is down does not stop it.
    if (this.events instanceof RedisEventBus) await this.events.start();
    const grpcPort = await this.grpc.listen(host, port);
    const boundHttp = this.http && httpPort !== null ? await this.http.listen(host, httpPort) : undefined;
    const boundMetrics = this.metrics && metricsPort !== null ? await this.metrics.listen(host, metricsPort) : undefined;
    return { grpcPort, httpPort: boundHttp, metricsPort: boundMetrics };
  }

  /**
   * Graceful stop: health turns NOT_SERVING and new calls get UNAVAILABLE at
   * once; calls in flight get the grace period, then are cancelled.
   */
  async shutdown(): Promise<void> {
    const { log, config } = this.options;
    this.health.setAll(false);
    this.monitor?.stop();
    this.tracker.drain();
    log.info({ inFlight: this.tracker.inFlight, graceMs: config.server.shutdownGraceMs }, "draining");
    const runsDone = this.runs.close(config.server.shutdownGraceMs);
    if (!(await this.tracker.waitIdle(config.server.shutdownGraceMs))) {
      log.warn({ inFlight: this.tracker.inFlight }, "grace period over; cancelling calls in flight");
      this.tracker.cancelAll();
      await this.tracker.waitIdle(1000);
    }
    this.tracker.closeLongLived();
    await Promise.all([this.grpc.close(1000), this.http?.close(1000), this.metrics?.close()]);
    // Runs going here had the grace period too; those left are interrupted (what they did is kept) before their plugins go.
    await runsDone;
    // Plugins first: an audit flush still needs the shared pool.
    await this.live.close();
    await this.events.close?.();
    await Promise.all([this.store.close(), this.runStore.close(), this.clients.close()]);
  }
}
