import type { AgentContext, AgentRunResult, Middleware, Next, PluginLogger, PluginMeter, RunEvent } from "@qingyu/plugin-api";
import { decodeEntry, encodeEntry, entryBytes } from "./entry.ts";
import { cacheKey } from "./key.ts";
import type { CacheStore } from "./store.ts";

/** What the cache middleware needs besides its store. */
export interface CacheSettings {
  ttlSeconds: number;
  maxEntryBytes: number;
  perUser: boolean;
}

/** How a request's `cache-control` header asks the cache to behave. */
interface Directives {
  /** Skip the lookup (the answer is still stored). */
  noCache: boolean;
  /** Neither look up nor store. */
  noStore: boolean;
}

function directives(header: string | undefined): Directives {
  const tokens = (header ?? "")
    .toLowerCase()
    .split(",")
    .map((t) => t.trim());
  return { noCache: tokens.includes("no-cache"), noStore: tokens.includes("no-store") };
}

/**
 * Whether a run may be answered again without running it: it succeeded, and
 * every tool it called is marked idempotent and returned (a call that failed,
 * timed out, was refused or skipped, or a run the deadline cut short, would
 * be served as if it were the answer).
 */
function cacheable(result: AgentRunResult): boolean {
  if (!result.success || result.finishReason === "deadline") return false;
  return result.toolCalls?.every((call) => call.idempotent === true && call.outcome === "ok") ?? true;
}

function marked(result: AgentRunResult, cache: string, durationMs = result.durationMs): AgentRunResult {
  return { ...result, durationMs, metadata: { ...result.metadata, cache } };
}

/**
 * Answers a repeated call from the store without running the agent, replaying
 * the original chunks; runs and stores otherwise (successful runs whose tool
 * calls, if any, were all idempotent and ok: see cacheable).
 * `metadata.cache` on the result says "hit", "miss" or "bypass" (no-store).
 */
export function cacheMiddleware(store: CacheStore, settings: CacheSettings, logger: PluginLogger, meter?: PluginMeter): Middleware {
  const ttlMs = Math.max(1, Math.round(settings.ttlSeconds * 1000));
  const requests = meter?.createCounter("qingyu.cache.requests", { description: "Cache lookups, by result (hit, miss, bypass)" });
  const count = (result: string, ctx: AgentContext) => requests?.add(1, { "qingyu.cache.result": result, "qingyu.agent": ctx.agentId });

  /*
   * A hit replays started, the text deltas and completed only, also for a run
   * that called tools: no tool runs now, so no step or tool event is sent
   * (middleware outside the cache, TOOL_CALLED/TOOL_COMPLETED subscribers and
   * audit would otherwise record calls that did not happen). The session then
   * stores the turn as [task, answer], the answer being the run's whole text: a
   * valid conversation for the next prompt with no calls left unanswered. The
   * result keeps the original's toolCalls and steps, as what the answer came from.
   */
  async function* replay(ctx: AgentContext, text: string): AsyncGenerator<RunEvent, boolean> {
    // Yields nothing when the entry is unreadable, so the caller can still run the agent.
    const run = decodeEntry(text);
    if (!run) return false;
    yield { type: "started", model: run.model };
    for (const chunk of run.chunks) yield { type: "delta", text: chunk };
    yield { type: "completed", result: marked(run.result, "hit", Date.now() - ctx.startTime) };
    return true;
  }

  async function* runAndStore(ctx: AgentContext, next: Next, key: string): AsyncGenerator<RunEvent> {
    let model = "";
    const chunks: string[] = [];
    // Step and tool events pass through and are not kept: a hit does not replay them (see replay).
    for await (const event of next()) {
      if (event.type === "started") model = event.model;
      else if (event.type === "delta") chunks.push(event.text);
      else if (event.type === "completed") {
        // Stored before the client has its answer, so a call it makes next (to any process) can hit.
        if (cacheable(event.result) && !ctx.signal.aborted) await save(key, model || event.result.model, chunks, event.result);
        yield { type: "completed", result: marked(event.result, "miss") };
        continue;
      }
      yield event;
    }
  }

  async function save(key: string, model: string, chunks: string[], result: AgentRunResult): Promise<void> {
    const text = encodeEntry({ model, chunks, result });
    const bytes = entryBytes(text);
    if (bytes > settings.maxEntryBytes) {
      logger.debug({ bytes, limit: settings.maxEntryBytes }, "result too large to cache");
      return;
    }
    await store.set(key, text, ttlMs);
  }

  return {
    name: "cache",
    async *process(ctx, next): AsyncIterable<RunEvent> {
      const asked = directives(ctx.header("cache-control"));
      if (asked.noStore) {
        count("bypass", ctx);
        for await (const event of next()) {
          yield event.type === "completed" ? { type: "completed", result: marked(event.result, "bypass") } : event;
        }
        return;
      }
      const key = await cacheKey(ctx, settings.perUser);
      if (!asked.noCache) {
        const text = await store.get(key);
        if (text !== undefined) {
          if (yield* replay(ctx, text)) return void count("hit", ctx);
          logger.warn({ call: ctx.callId }, "unreadable cache entry; running the agent");
        }
      }
      count("miss", ctx);
      yield* runAndStore(ctx, next, key);
    },
    dispose: () => store.dispose?.(),
  };
}
