import { Code, ConnectError, definePlugin, ErrorReason, type Principal, type RunEvent, withReason } from "@qingyu/plugin-api";
import { z } from "zod";

const agentPattern = z
  .string()
  .min(1)
  .regex(/^[^*]*\*?$/, 'only a trailing "*" is supported (e.g. "gpt-*")');

const Rule = z.strictObject({
  /** Who: principal ids, "role:<name>", or "*" for any authenticated principal. */
  principals: z.array(z.string().min(1)).min(1),
  /** Which agents: ids, prefix globs like "gpt-*", or "*" for all. */
  agents: z.array(agentPattern).min(1),
});

const Options = z
  .strictObject({
    /** A call is allowed when one rule matches both its principal and its agent. */
    rules: z.array(Rule).default([]),
    /** What happens when no rule matches. Admins are always allowed. */
    default: z.enum(["deny", "allow"]).default("deny"),
  })
  .prefault({});

/** Whether a principal matches one of the patterns (its id, "role:<name>" it holds, or "*"). */
function principalMatches(patterns: readonly string[], principal: Principal): boolean {
  return patterns.some((p) => {
    if (p === "*") return true;
    if (p.startsWith("role:")) return principal.roles.includes(p.slice("role:".length));
    return p === principal.id;
  });
}

/** Whether an agent id matches one of the patterns (exact, trailing-"*" prefix, or "*"). */
function agentMatches(patterns: readonly string[], agentId: string): boolean {
  return patterns.some((p) => (p.endsWith("*") ? agentId.startsWith(p.slice(0, -1)) : p === agentId));
}

/** Decides which principals may call which agents; needs an auth middleware before it. */
export default definePlugin({
  name: "authorization",
  kind: "middleware",
  configSchema: Options,
  setup({ options }) {
    return {
      name: "authorization",
      process(ctx, next): AsyncIterable<RunEvent> {
        const principal = ctx.principal;
        if (!principal) throw new ConnectError("no principal: put auth before authorization in the pipeline", Code.Unauthenticated);
        const allowed =
          principal.admin ||
          options.rules.some((rule) => principalMatches(rule.principals, principal) && agentMatches(rule.agents, ctx.agentId)) ||
          options.default === "allow";
        if (!allowed) {
          throw withReason(
            new ConnectError(`principal "${principal.id}" may not call agent "${ctx.agentId}"`, Code.PermissionDenied),
            ErrorReason.PERMISSION_DENIED,
            { agent_id: ctx.agentId },
          );
        }
        return next();
      },
    };
  },
});
