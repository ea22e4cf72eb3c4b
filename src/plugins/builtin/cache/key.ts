import type { AgentContext } from "@qingyu/plugin-api";
import { createHash } from "node:crypto";

/**
 * JSON with object keys sorted at every level and undefined fields dropped, so
 * that equal inputs give equal text whatever order their fields were set in.
 */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  const fields = Object.keys(value as Record<string, unknown>)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${fields.join(",")}}`;
}

/**
 * The cache key of a call: SHA-256 (hex) over everything that shapes the
 * answer: agent, effective model, system prompt, generation options (tool
 * options and output schema included), the agent's tools and step limits,
 * history (tool calls and results included), task, and the user when answers
 * are per user.
 */
export async function cacheKey(ctx: AgentContext, perUser: boolean): Promise<string> {
  // History first: reading the session may settle ctx.userId (a call naming no user acts as the owner).
  const history = await ctx.history();
  const agent = ctx.agent;
  const material = {
    // Bumped when the entry format or key material changes, so old entries are never read.
    v: 1,
    agent: ctx.agentId,
    provider: agent?.provider,
    model: ctx.options.model || agent?.model || "",
    system: agent?.systemPrompt ?? "",
    // The tool fields are undefined for an agent without tools, and undefined fields are dropped: such calls keep
    // the keys v1 gave them; an agent with tools gets new ones (its tools are in the key), so v stays 1.
    options: {
      temperature: ctx.options.temperature,
      maxTokens: ctx.options.maxTokens,
      defaults: agent?.defaults,
      toolChoice: ctx.options.toolChoice,
      parallelToolCalls: ctx.options.parallelToolCalls,
      maxSteps: ctx.options.maxSteps,
      outputSchema: ctx.options.outputSchema,
      tools: ctx.options.tools?.length ? ctx.options.tools : undefined,
    },
    agentTools: agent?.tools?.length ? agent.tools : undefined,
    agentOutputSchema: agent?.outputSchema,
    agentSteps: agent?.limits?.maxSteps,
    agentToolCalls: agent?.limits?.maxToolCalls,
    history: history.map((m) => ({ role: m.role, content: m.content, toolCalls: m.toolCalls, toolCallId: m.toolCallId })),
    task: ctx.task,
    user: perUser ? ctx.userId : undefined,
  };
  return createHash("sha256").update(canonicalJson(material)).digest("hex");
}
