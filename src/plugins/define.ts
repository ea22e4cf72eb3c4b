import type { Meter, Tracer } from "@opentelemetry/api";
import type { Redis } from "ioredis";
import type { Pool } from "pg";
import type { Logger } from "pino";
import type { ZodType } from "zod";
import type { AgentRegistry } from "../agents/registry.ts";
import type { EventBus, EventType, RuntimeEvent } from "../events/types.ts";
import type { Middleware } from "../pipeline/types.ts";
import type { LlmProvider } from "../providers/types.ts";

/** The three things a plugin can provide. */
export type PluginKind = "middleware" | "event-handler" | "llm-provider";

/** A subscriber to runtime events; runs isolated from the call and other handlers. */
export interface EventHandler {
  types: readonly EventType[] | "any";
  handle(event: RuntimeEvent): void | Promise<void>;
  /** Releases what setup acquired; called at shutdown and once a reload has replaced it. */
  dispose?(): void | Promise<void>;
}

/** What `setup` returns for each kind. */
export interface PluginProducts {
  middleware: Middleware;
  "event-handler": EventHandler;
  "llm-provider": LlmProvider;
}

/** What the runtime hands a plugin at setup. */
export interface PluginHost<Options = unknown> {
  /** The plugin's options from config, validated by its configSchema. */
  readonly options: Options;
  /** A logger bound to this plugin's name. */
  readonly logger: Logger;
  readonly events: EventBus;
  /** The configured agents. */
  readonly agents: AgentRegistry;
  /** The process environment, passed in rather than read globally (tests inject their own). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The process's shared Redis client; throws when `redis.url` is not configured. The runtime closes it. */
  redis(): Redis;
  /** The process's shared PostgreSQL pool; throws when `postgres.url` is not configured. The runtime closes it. */
  postgres(): Pool;
  /** Another configured provider (a key of `providers`), set up on first request; for providers that wrap others. */
  provider(name: string): Promise<LlmProvider>;
  /** Resolves a path from the config the plugin was configured in. */
  resolvePath(path: string): string;
  /** The runtime's OpenTelemetry tracer (a no-op one when tracing is off); the pipeline already spans each middleware. */
  readonly tracer: Tracer;
  /** The runtime's OpenTelemetry meter, for a plugin's own metrics (exported with the runtime's). */
  readonly meter: Meter;
}

/** A plugin module's default export, made by definePlugin. */
export interface PluginDefinition<K extends PluginKind = PluginKind, Options = unknown> {
  /** Unique; what config refers to. */
  readonly name: string;
  readonly kind: K;
  /** Validates (and defaults) the options given in config. */
  readonly configSchema?: ZodType<Options>;
  setup(host: PluginHost<Options>): PluginProducts[K] | Promise<PluginProducts[K]>;
  /** At shutdown, and when a reload replaces the plugin. */
  dispose?(): void | Promise<void>;
}

const PLUGIN_KINDS: readonly string[] = ["middleware", "event-handler", "llm-provider"];
const MARK = Symbol.for("qingyu.plugin");

/** Declares a plugin; typed so that `setup` must return what `kind` promises. */
export function definePlugin<K extends PluginKind, Options = undefined>(
  def: PluginDefinition<K, Options>,
): PluginDefinition<K, Options> {
  return Object.freeze({ ...def, [MARK]: true });
}

/** Why a module's default export is not a plugin, or undefined when it is one. */
export function pluginShapeProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== "object") return "default export is not a plugin (use definePlugin)";
  const def = value as Partial<PluginDefinition>;
  if (typeof def.name !== "string" || def.name === "") return "plugin has no name";
  if (typeof def.kind !== "string" || !PLUGIN_KINDS.includes(def.kind)) {
    return `plugin "${def.name}" has kind ${JSON.stringify(def.kind)}; expected one of ${PLUGIN_KINDS.join(", ")}`;
  }
  if (typeof def.setup !== "function") return `plugin "${def.name}" has no setup function`;
  return undefined;
}
