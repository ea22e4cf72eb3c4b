import type { ChatMessage, ToolCall } from "@qingyu/plugin-api";

/**
 * The message as every store keeps it: ChatMessage's own fields only, tool
 * calls copied call by call, and a field the message lacks left out (not set
 * to undefined), so a message without tool use reads back as `{role, content}`.
 */
export function storedMessage(m: ChatMessage): ChatMessage {
  const out: ChatMessage = { role: m.role, content: m.content };
  if (m.toolCalls !== undefined) out.toolCalls = m.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments }));
  if (m.toolCallId !== undefined) out.toolCallId = m.toolCallId;
  return out;
}

const NUL = "\u0000";
const clean = (s: string) => (s.includes(NUL) ? s.replaceAll(NUL, "\uFFFD") : s);
const callHasNul = (c: ToolCall) => c.id.includes(NUL) || c.name.includes(NUL) || c.arguments.includes(NUL);

/**
 * The message with NUL replaced by U+FFFD in every text it carries: PostgreSQL
 * text cannot hold NUL, and it means nothing in a conversation, so every store
 * gets the same replacement. Returns the message itself when it has none.
 */
export function withoutNul(m: ChatMessage): ChatMessage {
  const dirty = m.content.includes(NUL) || (m.toolCallId?.includes(NUL) ?? false) || (m.toolCalls?.some(callHasNul) ?? false);
  if (!dirty) return m;
  const out: ChatMessage = { ...m, content: clean(m.content) };
  if (m.toolCalls !== undefined) out.toolCalls = m.toolCalls.map((c) => ({ id: clean(c.id), name: clean(c.name), arguments: clean(c.arguments) }));
  if (m.toolCallId !== undefined) out.toolCallId = clean(m.toolCallId);
  return out;
}

/** Characters of a message that reach the model: its content, the id it answers, and each call's id, name and arguments. */
export function messageChars(m: ChatMessage): number {
  let chars = m.content.length + (m.toolCallId?.length ?? 0);
  for (const c of m.toolCalls ?? []) chars += c.id.length + c.name.length + c.arguments.length;
  return chars;
}
