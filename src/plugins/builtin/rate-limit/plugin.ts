import { after, type AgentContext, Code, ConnectError, definePlugin, ErrorReason, limitExceeded, observe, withReason } from "@qingyu/plugin-api";
import { z } from "zod";
import type { BucketDraw, Buckets } from "./buckets.ts";
import { estimateInputTokens } from "./estimate.ts";
import { MemoryBuckets } from "./memory-buckets.ts";
import { RedisBuckets } from "./redis-buckets.ts";

const Limits = z
  .strictObject({
    /** Calls per minute; unlimited when absent. */
    requestsPerMinute: z.int().positive().optional(),
    /** LLM tokens (input + output) per minute; unlimited when absent. */
    tokensPerMinute: z.int().positive().optional(),
  })
  .prefault({});

const Options = z
  .strictObject({
    /** Where buckets live: "memory" limits each process, "redis" all processes sharing the Redis together. */
    backend: z.enum(["memory", "redis"]).default("memory"),
    /** Prefix of every Redis key (Redis only); give each deployment sharing a Redis its own. */
    keyPrefix: z.string().min(1).default("qingyu:rl:"),
    /** Limits per caller: the principal's id, else "user:<user_id>", else "anonymous" (shared by all anonymous callers). */
    perPrincipal: Limits,
    /** Limits per agent, over all callers. */
    perAgent: Limits,
    /** When the backend fails: "reject" the call (UNAVAILABLE), or "allow" it unlimited with a warning. */
    onBackendError: z.enum(["reject", "allow"]).default("reject"),
  })
  .prefault({});

type RateLimitOptions = z.infer<typeof Options>;

/** One configured limit: a bucket per principal or per agent. */
interface Limit {
  readonly scope: "principal" | "agent";
  readonly unit: "requests" | "tokens";
  readonly capacity: number;
}

/** A limit applied to one call: its bucket, and how to name it to the caller. */
interface Charge {
  readonly draw: BucketDraw;
  readonly limit: Limit;
  readonly label: string;
}

/** What config cannot express; for tests. */
export interface RateLimitDeps {
  /** The memory backend's clock (epoch ms). Redis uses its own TIME. */
  readonly now?: () => number;
}

function configuredLimits(options: RateLimitOptions): Limit[] {
  const limits: Limit[] = [];
  for (const scope of ["principal", "agent"] as const) {
    const l = scope === "principal" ? options.perPrincipal : options.perAgent;
    if (l.requestsPerMinute) limits.push({ scope, unit: "requests", capacity: l.requestsPerMinute });
    if (l.tokensPerMinute) limits.push({ scope, unit: "tokens", capacity: l.tokensPerMinute });
  }
  return limits;
}

/** Whose bucket a call draws from: the authenticated principal, else the named user, else everyone anonymous. */
function principalKey(ctx: AgentContext): string {
  if (ctx.principal) return ctx.principal.id;
  return ctx.userId ? `user:${ctx.userId}` : "anonymous";
}

/** The option that sets a limit, as a refusal names it: "perPrincipal.requestsPerMinute". */
function settingOf(limit: Limit): string {
  return `${limit.scope === "principal" ? "perPrincipal" : "perAgent"}.${limit.unit}PerMinute`;
}

function refusal(charge: Charge, retryAfterMs: number): ConnectError {
  const ms = Math.max(1, Math.ceil(retryAfterMs));
  const refused = new ConnectError(`rate limit exceeded: ${charge.label} (limit ${charge.limit.capacity}); retry in ${ms} ms`, Code.ResourceExhausted, {
    "retry-after-ms": String(ms),
    "retry-after": String(Math.ceil(ms / 1000)),
  });
  return withReason(refused, ErrorReason.RATE_LIMITED, { retry_after_ms: String(ms), limit: settingOf(charge.limit) });
}

/** Makes the plugin; the default export is made with no overrides. */
export function createRateLimitPlugin(deps: RateLimitDeps = {}) {
  return definePlugin({
    name: "rate-limit",
    kind: "middleware",
    configSchema: Options,
    setup({ options, logger, redis, meter }) {
      const refused = meter.createCounter("qingyu.rate_limit.refused", { description: "Calls refused by the rate limit, by agent and limit" });
      const limits = configuredLimits(options);
      if (limits.length === 0) logger.warn("rate-limit has no limits configured; every call passes");
      const counts = limits.some((l) => l.unit === "tokens");
      const buckets: Buckets = options.backend === "redis" ? new RedisBuckets(redis()) : new MemoryBuckets(deps.now);
      const pending = new Set<Promise<void>>();

      const charges = (ctx: AgentContext, estimate: number): Charge[] => {
        const principal = principalKey(ctx);
        return limits.map((limit) => {
          const name = limit.scope === "principal" ? principal : ctx.agentId;
          const short = limit.scope === "principal" ? "p" : "a";
          const key = `${options.keyPrefix}${short}:${name}:${limit.unit === "requests" ? "req" : "tok"}`;
          const amount = limit.unit === "requests" ? 1 : estimate;
          return { draw: { key, capacity: limit.capacity, amount }, limit, label: `${limit.unit} per minute for ${limit.scope} "${name}"` };
        });
      };

      // Fire and forget: the caller's stream neither waits for nor hears about
      // the store; dispose waits for what is still in flight.
      const settle = (ctx: AgentContext, tokenCharges: Charge[], amount: number, why: string): void => {
        if (amount === 0 || tokenCharges.length === 0) return;
        const draws = tokenCharges.map((c) => ({ ...c.draw, amount }));
        const done: Promise<void> = Promise.resolve()
          .then(() => buckets.adjust(draws))
          .catch((err: unknown) => {
            logger.warn({ call: ctx.callId, err: (err as Error)?.message ?? String(err), amount }, `rate-limit ${why} failed`);
          })
          .finally(() => pending.delete(done));
        pending.add(done);
      };

      return {
        name: "rate-limit",
        process(ctx, next) {
          if (limits.length === 0) return next();
          let estimate = 0;
          let tokenCharges: Charge[] = [];
          let limited = true;
          const admitted = (async () => {
            estimate = counts ? await estimateInputTokens(ctx) : 0;
            const all = charges(ctx, estimate);
            const tooBig = all.find((c) => c.draw.amount > c.draw.capacity);
            if (tooBig) {
              throw limitExceeded(
                "task",
                `the call's estimated ${estimate} input tokens exceed the limit of ${tooBig.label} (${tooBig.limit.capacity}); it can never fit`,
                settingOf(tooBig.limit),
                tooBig.limit.capacity,
              );
            }
            let outcome;
            try {
              outcome = await buckets.take(all.map((c) => c.draw));
            } catch (err) {
              // The driver's detail (hosts, ports) stays on the cause: the server logs it, the client never sees it.
              if (options.onBackendError === "reject") throw backendUnavailable(options.backend, err);
              logger.warn({ call: ctx.callId, err: (err as Error)?.message ?? String(err) }, "rate-limit backend failed; call allowed unlimited");
              limited = false;
              return;
            }
            if (!outcome.ok) {
              const charge = all[outcome.index]!;
              refused.add(1, { "qingyu.agent": ctx.agentId, "qingyu.rate_limit.scope": charge.limit.scope, "qingyu.rate_limit.unit": charge.limit.unit });
              throw refusal(charge, outcome.retryAfterMs);
            }
            tokenCharges = all.filter((c) => c.limit.unit === "tokens");
          })();
          // Observed, not wrapped in a generator: settling needs only the completed event.
          return after(admitted, () => {
            if (!limited || tokenCharges.length === 0) return next();
            let settled = false;
            // What the buckets hold for this call (the estimate, then the usage as it is known) and what the steps reported.
            let charged = estimate;
            let spent = 0;
            return observe(next(), {
              event(event) {
                if (settled) return;
                if (event.type === "step_finished") {
                  // A tool run is charged as each step ends: a long run draws as it goes, and a run that
                  // fails later has still spent its finished steps' tokens.
                  spent += event.usage.inputTokens + event.usage.outputTokens;
                  if (spent > charged) {
                    settle(ctx, tokenCharges, spent - charged, "settle");
                    charged = spent;
                  }
                  return;
                }
                if (event.type !== "completed") return;
                settled = true;
                // The result's usage is summed over every step; 0 means the provider reported none: what was charged stands.
                const used = event.result.usage.inputTokens + event.result.usage.outputTokens;
                if (used > 0) settle(ctx, tokenCharges, used - charged, "settle");
              },
              end() {
                // Failed, cancelled, or abandoned before completing: only the finished steps' tokens were spent.
                if (!settled) settle(ctx, tokenCharges, spent - charged, "refund");
              },
            });
          });
        },
        async dispose() {
          await Promise.allSettled([...pending]);
          await buckets.dispose?.();
        },
      };
    },
  });
}

/** Token buckets per principal and per agent, for requests and LLM tokens per minute. */
export default createRateLimitPlugin();

/** UNAVAILABLE for a backend that failed, in the public contract's terms (STORE_UNAVAILABLE; the server logs the cause). */
function backendUnavailable(backend: string, cause: unknown): ConnectError {
  if (cause instanceof ConnectError) return cause;
  return withReason(
    new ConnectError(`rate-limit ${backend} backend unavailable`, Code.Unavailable, undefined, undefined, cause),
    ErrorReason.STORE_UNAVAILABLE,
  );
}
