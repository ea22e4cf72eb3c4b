import type { ChatMessage, ProviderRequest, ToolChoice } from "@qingyu/plugin-api";
import type { ChatCompletionMessageParam, ChatCompletionToolChoiceOption } from "openai/resources/chat/completions";

/**
 * Keys of an agent's `extra` that would bypass the request's own tool and
 * output settings. The agent config refuses them; the provider drops them too,
 * so no path can offer the model tools the runtime does not know about.
 */
const RESERVED_EXTRA = ["tools", "tool_choice", "parallel_tool_calls", "response_format", "functions", "function_call"] as const;

/** The chat-completions body for a request, without the streaming options. */
export function requestParams(req: ProviderRequest) {
  const tools = req.tools?.length ? req.tools : undefined;
  // Extra goes first so that agent defaults can never turn streaming off or swap the model or prompt.
  return {
    ...withoutReserved(req.extra),
    model: req.model,
    messages: wireMessages(req.messages),
    ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
    ...(req.maxTokens !== undefined ? { max_tokens: req.maxTokens } : {}),
    ...(tools
      ? {
          tools: tools.map((t) => ({ type: "function" as const, function: { name: t.name, description: t.description, parameters: t.parameters } })),
          // OpenAI refuses tool_choice and parallel_tool_calls in a request without tools.
          ...(req.toolChoice !== undefined ? { tool_choice: wireToolChoice(req.toolChoice) } : {}),
          ...(req.parallelToolCalls !== undefined ? { parallel_tool_calls: req.parallelToolCalls } : {}),
        }
      : {}),
    ...(req.responseFormat
      ? {
          // Not strict: strict mode accepts only a subset of JSON Schema, and the runtime validates the answer itself.
          response_format: {
            type: "json_schema" as const,
            json_schema: { name: req.responseFormat.name, schema: req.responseFormat.schema, strict: false },
          },
        }
      : {}),
  };
}

function withoutReserved(extra: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!extra || !RESERVED_EXTRA.some((key) => key in extra)) return extra;
  const out = { ...extra };
  for (const key of RESERVED_EXTRA) delete out[key];
  return out;
}

function wireToolChoice(choice: ToolChoice): ChatCompletionToolChoiceOption {
  return typeof choice === "string" ? choice : { type: "function", function: { name: choice.name } };
}

/**
 * The messages in OpenAI's shape. A conversation without tool use is sent as
 * it is (a plain ChatMessage is already that shape), so a text-only call
 * copies nothing.
 */
function wireMessages(messages: ChatMessage[]): ChatCompletionMessageParam[] {
  if (!messages.some(usesTools)) return messages as ChatCompletionMessageParam[];
  return messages.map((m): ChatCompletionMessageParam => {
    if (m.role === "tool") return { role: "tool", tool_call_id: m.toolCallId ?? "", content: m.content };
    if (m.role === "assistant" && m.toolCalls?.length) {
      return {
        role: "assistant",
        // OpenAI's own shape for an assistant turn that only called tools.
        content: m.content === "" ? null : m.content,
        tool_calls: m.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })),
      };
    }
    return { role: m.role, content: m.content } as ChatCompletionMessageParam;
  });
}

function usesTools(m: ChatMessage): boolean {
  return m.role === "tool" || m.toolCalls !== undefined || m.toolCallId !== undefined;
}
