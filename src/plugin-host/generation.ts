import type { EventBus, EventHandler, PluginDefinition } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import type { AgentRegistry } from "../agents/registry.ts";
import type { Config } from "../config/schema.ts";
import type { Executor } from "../executor/executor.ts";
import type { Admission } from "../pipeline/admission.ts";
import { forgetPlugin } from "./import-cache.ts";
import type { CatalogEntry } from "./loader.ts";
import { handlerListener } from "../telemetry/handler-run.ts";
import type { Telemetry } from "../telemetry/setup.ts";

/** Something set up for a generation that must be released with it. */
export interface Disposable {
  /** For logs: which config entry it came from. */
  readonly where: string;
  dispose(): void | Promise<void>;
}

/** What one generation is made of; see assemble(). */
export interface GenerationParts {
  id: number;
  config: Config;
  catalog: ReadonlyMap<string, CatalogEntry>;
  agents: AgentRegistry;
  executor: Executor;
  admission: Admission;
  /** Middleware names, outermost first. */
  pipeline: readonly string[];
  /** The providers set up, by config name: the plugin each runs. */
  providers: Readonly<Record<string, string>>;
  /** Every tool agents may be given, by name. */
  tools?: readonly string[];
  /** Event handlers with the plugin names they came from. */
  handlers: readonly { name: string; handler: EventHandler }[];
  /** Spans and failure counts of handler runs. */
  telemetry?: Telemetry;
  disposables: readonly Disposable[];
  /** The plugin definitions this generation uses. */
  definitions: ReadonlySet<PluginDefinition>;
}

/**
 * One loaded set of config and plugins. A reload builds a new generation and
 * swaps it in; calls that entered the old one finish on it, and it is disposed
 * once the last of them has left.
 */
export class Generation {
  private active = 0;
  private unsubscribers: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(readonly parts: GenerationParts) {}

  get id(): number {
    return this.parts.id;
  }

  /** What it serves, as the fields of the start-up ("serving") and reload ("reloaded") log lines. */
  summary(): Record<string, unknown> {
    const { agents, providers, pipeline, handlers } = this.parts;
    return {
      generation: this.id,
      agents: agents.list().map((a) => a.id),
      // With what each misses: its callers get FAILED_PRECONDITION.
      unavailableAgents: Object.fromEntries(agents.unavailable().map((a) => [a.id, a.missing])),
      providers,
      pipeline,
      eventHandlers: handlers.map((h) => h.name),
      ...(this.parts.tools?.length ? { tools: this.parts.tools } : {}),
    };
  }

  /** Subscribes its event handlers; each handler's failure is the bus's to log. */
  activate(events: EventBus): void {
    for (const { name, handler } of this.parts.handlers) {
      this.unsubscribers.push(events.subscribe(handler.types, handlerListener(name, handler, this.parts.telemetry)));
    }
  }

  /** Stops its event handlers from receiving new events. */
  deactivate(): void {
    for (const unsubscribe of this.unsubscribers.splice(0)) unsubscribe();
  }

  /** A call starts on this generation; pair with leave(). */
  enter(): void {
    this.active++;
  }

  leave(): void {
    if (--this.active === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Resolves when no call is on this generation. */
  idle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Releases every product set up for it, innermost last-set-up first, and the
   * plugin modules no generation still running uses (`stillUsed`; none at
   * shutdown). A dispose that fails is logged.
   */
  async dispose(log: Logger, stillUsed: (definition: PluginDefinition) => boolean = () => false): Promise<void> {
    this.deactivate();
    await disposeAll(log, this.parts.disposables);
    for (const definition of this.parts.definitions) {
      if (stillUsed(definition) || !definition.dispose) continue;
      await disposeQuietly(log, `plugin "${definition.name}"`, () => definition.dispose!());
      forgetPlugin(definition);
    }
  }
}

/** Releases products, last set up first; a dispose that fails is logged and the rest still run. */
export async function disposeAll(log: Logger, disposables: readonly Disposable[]): Promise<void> {
  for (const item of [...disposables].reverse()) await disposeQuietly(log, item.where, () => item.dispose());
}

async function disposeQuietly(log: Logger, where: string, dispose: () => void | Promise<void>): Promise<void> {
  try {
    await dispose();
  } catch (err) {
    log.error({ err, where }, "plugin dispose failed");
  }
}
