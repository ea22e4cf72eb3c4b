import type { ChatMessage } from "@qingyu/plugin-api";
import { messageChars } from "./messages.ts";

/**
 * The window from its first `user` message on (empty when it has none).
 *
 * Trimming keeps a contiguous tail of the conversation, so the only place it
 * can break one is the window's start: a `tool` result whose assistant call was
 * cut (providers refuse a tool message that does not answer a call of the
 * message before it), or an assistant message (with or without calls) whose
 * question was cut. A stored turn always starts with the user's message, so
 * starting there keeps whole turns: every call with its results, every answer
 * with its question.
 */
export function startAtUserMessage(messages: ChatMessage[]): ChatMessage[] {
  const first = messages.findIndex((m) => m.role === "user");
  if (first === 0) return messages;
  return first === -1 ? [] : messages.slice(first);
}

/**
 * The newest messages whose estimated tokens (4 characters a token, tool calls
 * counted) fit `budget`, in their original order. Stops at the first that does
 * not fit, so the history stays a contiguous tail of the conversation, then
 * starts it at a user message (startAtUserMessage) so no tool result is
 * separated from its call.
 */
export function withinTokenBudget(messages: ChatMessage[], budget: number): ChatMessage[] {
  let spent = 0;
  let from = messages.length;
  while (from > 0) {
    const cost = Math.ceil(messageChars(messages[from - 1]!) / 4);
    if (spent + cost > budget) break;
    spent += cost;
    from--;
  }
  return startAtUserMessage(from === 0 ? messages : messages.slice(from));
}
