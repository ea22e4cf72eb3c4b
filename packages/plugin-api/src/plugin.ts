import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { AgentCatalog } from "./agents.ts";
import type { EventBus, EventHandler } from "./events.ts";
import type { Middleware } from "./middleware.ts";
import type { PluginLogger, PluginMeter, PluginTracer } from "./observability.ts";
import type { LlmProvider } from "./provider.ts";
import type { Tool, ToolSource } from "./tools.ts";

/**
 * The plugin contract's major version. definePlugin stamps it on every plugin;
 * a host refuses a plugin made for another major, naming both.
 */
export const PLUGIN_API_VERSION = 1;

/** The things a plugin can provide. */
export type PluginKind = "middleware" | "event-handler" | "llm-provider" | "tool" | "tool-source";

/** Every plugin kind, for hosts that check a definition. */
export const PLUGIN_KINDS: readonly PluginKind[] = ["middleware", "event-handler", "llm-provider", "tool", "tool-source"];

/** What `setup` returns for each kind. */
export interface PluginProducts {
  middleware: Middleware;
  "event-handler": EventHandler;
  "llm-provider": LlmProvider;
  /** One tool (or several: a plugin may return a list). */
  tool: Tool | readonly Tool[];
  "tool-source": ToolSource;
}

/** A validator for a plugin's options: any Standard Schema (zod 3.24+/4, valibot, arktype...). */
export type OptionsSchema<Options = unknown> = StandardSchemaV1<unknown, Options>;

/** What the runtime hands a plugin at setup. */
export interface PluginHost<Options = Record<string, unknown>> {
  /** This entry's options from config ({} when config gives none), validated by configSchema. */
  readonly options: Options;
  /** A logger bound to this plugin's name. */
  readonly logger: PluginLogger;
  readonly events: EventBus;
  /** The configured agents. */
  readonly agents: AgentCatalog;
  /** The process environment, passed in rather than read globally (tests inject their own). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * The process's shared ioredis client (`redis.url`); throws when none is configured.
   * The runtime owns and closes it. Type it as you import it: `host.redis<Redis>()`.
   */
  redis<Client = unknown>(): Client;
  /** The process's shared `pg.Pool` (`postgres.url`); throws when none is configured. The runtime closes it. */
  postgres<Pool = unknown>(): Pool;
  /** Another configured provider (a key of `providers`), set up on first request; for providers that wrap others. */
  provider(name: string): Promise<LlmProvider>;
  /** Resolves a path from the config the plugin was configured in. */
  resolvePath(path: string): string;
  /** The runtime's OpenTelemetry tracer (a no-op one when tracing is off); the pipeline already spans each middleware. */
  readonly tracer: PluginTracer;
  /** The runtime's OpenTelemetry meter, for a plugin's own metrics (exported with the runtime's). */
  readonly meter: PluginMeter;
}

/** What a plugin module declares; definePlugin turns it into a PluginDefinition. */
export interface PluginSpec<K extends PluginKind = PluginKind, Options = Record<string, unknown>> {
  /** Unique; what config refers to. */
  readonly name: string;
  readonly kind: K;
  /** Validates (and defaults) the options given in config; sees `{}` when config gives none. */
  readonly configSchema?: OptionsSchema<Options>;
  setup(host: PluginHost<Options>): PluginProducts[K] | Promise<PluginProducts[K]>;
  /** At shutdown, and when a reload replaces the plugin. */
  dispose?(): void | Promise<void>;
}

/** A plugin module's default export, made by definePlugin. */
export interface PluginDefinition<K extends PluginKind = PluginKind, Options = Record<string, unknown>> extends PluginSpec<K, Options> {
  /** The contract major the plugin was made for (PLUGIN_API_VERSION of the package it imported). */
  readonly apiVersion: number;
}

/** Declares a plugin; typed so that `setup` must return what `kind` promises and `options` is what the schema produces. */
export function definePlugin<K extends PluginKind, Options = Record<string, unknown>>(spec: PluginSpec<K, Options>): PluginDefinition<K, Options> {
  return Object.freeze({ ...spec, apiVersion: PLUGIN_API_VERSION });
}
