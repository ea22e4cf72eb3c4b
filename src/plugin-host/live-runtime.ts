import type { EventBus } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import { shownMessage } from "../errors.ts";
import type { Generation } from "./generation.ts";

/** What a reload did. */
export interface ReloadOutcome {
  generation: number;
  /** Middleware names, outermost first. */
  pipeline: readonly string[];
  /** Changes that were read but need a restart to take effect. */
  warnings: readonly string[];
}

/** Builds the next generation from the config and plugin files as they are now. */
export type GenerationLoader = (id: number) => Promise<Generation>;

// Settings the shared parts were built from: a reload cannot change them.
const RESTART_ONLY: readonly (keyof Config)[] = ["server", "log", "sessions", "redis", "postgres"];

/**
 * The generation new calls run on, and reloads that replace it. Reloads run
 * one at a time; a failed one leaves the running generation untouched.
 */
export class LiveRuntime {
  private serial: Promise<unknown> = Promise.resolve();
  private readonly retiring = new Set<Promise<void>>();
  // The current generation and those not yet disposed: a plugin an unchanged file gave is shared by them.
  private readonly held = new Set<Generation>();
  private closed = false;

  constructor(
    private generation: Generation,
    private readonly load: GenerationLoader,
    private readonly events: EventBus,
    private readonly log: Logger,
  ) {
    generation.activate(events);
    this.held.add(generation);
    log.info(generation.summary(), "serving");
  }

  /** The generation a call starting now runs on. */
  get current(): Generation {
    return this.generation;
  }

  /** Re-reads config and plugins and swaps them in; rejects (keeping the old ones) when they do not load. */
  reload(): Promise<ReloadOutcome> {
    const run = this.serial.then(() => this.swap());
    this.serial = run.catch(() => undefined);
    return run;
  }

  private async swap(): Promise<ReloadOutcome> {
    if (this.closed) throw new Error("the server is shutting down");
    const old = this.generation;
    let next: Generation;
    try {
      next = await this.load(old.id + 1);
    } catch (err) {
      this.log.error({ err: shownMessage(err), generation: old.id }, "reload failed; the running config and plugins stay");
      throw err;
    }
    const warnings = RESTART_ONLY.filter((key) => JSON.stringify(old.parts.config[key]) !== JSON.stringify(next.parts.config[key])).map(
      (key) => `"${key}" changed; it takes effect only after a restart`,
    );
    for (const warning of warnings) this.log.warn({ generation: next.id }, warning);
    // Events go to the new handlers from here on; calls already in the old generation finish there.
    next.activate(this.events);
    old.deactivate();
    this.generation = next;
    this.held.add(next);
    const retire = old.idle().then(() => {
      this.held.delete(old);
      return old.dispose(this.log, (definition) => [...this.held].some((g) => g.parts.definitions.has(definition)));
    });
    this.retiring.add(retire);
    void retire.finally(() => this.retiring.delete(retire));
    this.log.info(next.summary(), "reloaded");
    return { generation: next.id, pipeline: next.parts.pipeline, warnings };
  }

  /** At shutdown, once calls are over: disposes the current generation and any still retiring. */
  async close(): Promise<void> {
    this.closed = true;
    await this.serial;
    // Calls were cancelled before this; a generation whose call never left is disposed anyway.
    await Promise.race([Promise.allSettled(this.retiring), new Promise((r) => setTimeout(r, 5000).unref())]);
    await this.generation.dispose(this.log);
  }
}
