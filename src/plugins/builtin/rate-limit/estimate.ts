import type { AgentContext } from "@qingyu/plugin-api";

/** Characters per token in the usual rough estimate for English text and code. */
const CHARS_PER_TOKEN = 4;

/** A rough count of tokens in some text: ceil(chars / 4). */
function estimateTokens(chars: number): number {
  return Math.ceil(chars / CHARS_PER_TOKEN);
}

/**
 * The input tokens a call will likely send, before it runs: the agent's
 * system prompt, the history the agent will see (its tool calls included),
 * and the task. Settled against the real usage as the call's steps finish.
 */
export async function estimateInputTokens(ctx: AgentContext): Promise<number> {
  let chars = (ctx.agent?.systemPrompt.length ?? 0) + ctx.task.length;
  for (const message of await ctx.history()) {
    chars += message.content.length;
    // An assistant's tool calls go back to the model with the history: their names and arguments are input too.
    for (const call of message.toolCalls ?? []) chars += call.name.length + call.arguments.length;
  }
  return estimateTokens(chars);
}
