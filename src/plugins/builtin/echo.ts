/**
 * The echo provider: deterministic, for demos, tests and benchmarks. It
 * streams back `[history=H] <task>` word by word, H being the number of
 * non-system messages before the last user message.
 *
 * Script syntax, so tool loops are testable without a model. Script lines are
 * the lines of a user message that start with `!`; U is the last user message
 * that has any. Without U, echo only echoes.
 *
 *   !call <name> <json-args>   a tool call of the current step; the arguments are sent as written
 *                              (not checked: a test can script invalid ones), `{}` when left out
 *   !say <text>                what the model says in the current step, before its calls
 *   !step                      ends the current step; the next `!call`s form the next one
 *   !loop <name> <json-args>   a call made in every step, forever (a model that never stops)
 *   !answer <text>             the k-th one is the k-th final answer after U (a repair step asks again)
 *
 * Other `!` lines are ignored; a step with no `!call` is no step (its `!say` is dropped).
 *
 * Step mode: when the request's last message is U or a `tool` message after
 * U, step s = (assistant messages with tool calls after U) + 1. If the script
 * has a step s, or a `!loop`, echo streams that step's `!say` text and then its
 * calls (each as two `tool_call_delta`s, id and name on the first, then after
 * all of them the complete `tool_call`s), finishing with "tool_calls". Call ids
 * are `call_<u>_<s>_<i>`: u user messages in the request, i from 1 in the step.
 *
 * Otherwise the final answer: `!answer` line a+1 when U has more than a of
 * them, a being the assistant messages without tool calls after U; else the
 * echo of the last user message without its script lines (then trimmed), followed by a line
 * `[<tool name>] <content>` for each tool message after it (the name found
 * by its toolCallId among the assistant messages' calls; the id when none has it).
 *
 * Usage: input tokens are the words of all messages, output tokens the words
 * and calls streamed. maxTokens and tokenDelayMs (also paid before each call) apply to both.
 */
import { definePlugin, type ChatMessage, type ProviderChunk, type ProviderRequest, type ToolCall } from "@qingyu/plugin-api";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { abortReason } from "../../errors.ts";

const Options = z
  .strictObject({
    /** Pause before each token, for demos, cancellation tests and benchmarks. */
    tokenDelayMs: z.int().min(0).default(0),
  })
  .prefault({});

// Whitespace-delimited words stand in for tokens: deterministic and cheap.
const countWords = (text: string): number => (text.match(/\S+/g) ?? []).length;
const words = (text: string): string[] => (text ? text.split(/(?<=\s)/) : []);

/** A call as the script names it. */
interface ScriptedCall {
  name: string;
  args: string;
}

/** One model step of a script. */
interface Step {
  say: string[];
  calls: ScriptedCall[];
}

/** What a user message's script lines ask for. */
interface Script {
  steps: Step[];
  loops: ScriptedCall[];
  answers: string[];
}

/** What echo answers one request with. */
interface Plan {
  text: string;
  calls: ToolCall[];
}

const isScriptLine = (line: string): boolean => line.startsWith("!");
// Without splitting: every plain call asks this of every user message in its history.
const scripted = (text: string): boolean => text.startsWith("!") || text.includes("\n!");
const hasScript = (m: ChatMessage): boolean => m.role === "user" && scripted(m.content);
const callsTools = (m: ChatMessage): boolean => m.role === "assistant" && (m.toolCalls?.length ?? 0) > 0;

function parseScript(content: string): Script {
  const script: Script = { steps: [], loops: [], answers: [] };
  let step: Step = { say: [], calls: [] };
  const close = () => {
    if (step.calls.length) script.steps.push(step);
    step = { say: [], calls: [] };
  };
  for (const line of content.split("\n")) {
    const match = /^!(\w+)(?:\s+(.*))?$/s.exec(line.trimEnd());
    if (!match) continue;
    const [, directive, rest = ""] = match;
    if (directive === "step") close();
    else if (directive === "say") step.say.push(rest);
    else if (directive === "answer") script.answers.push(rest);
    else if (directive === "call" || directive === "loop") {
      const call = /^(\S+)\s*(.*)$/s.exec(rest);
      if (!call) continue;
      (directive === "call" ? step.calls : script.loops).push({ name: call[1]!, args: call[2]!.trim() || "{}" });
    }
  }
  close();
  return script;
}

/** The reply of a request without a script step to take: `!answer` or the echo. */
function finalText(messages: ChatMessage[], script: Script | undefined, afterU: ChatMessage[]): string {
  if (script) {
    const answered = afterU.filter((m) => m.role === "assistant" && !callsTools(m)).length;
    if (answered < script.answers.length) return script.answers[answered]!;
  }
  const last = messages.findLastIndex((m) => m.role === "user");
  let history = 0;
  for (let i = 0; i < last; i++) if (messages[i]!.role !== "system") history++;
  const task = last < 0 ? "" : messages[last]!.content;
  // A message without script lines is echoed exactly as it came.
  const said = scripted(task)
    ? task
        .split("\n")
        .filter((line) => !isScriptLine(line))
        .join("\n")
        .trim()
    : task;
  let text = `[history=${history}] ${said}`;
  for (let i = last + 1; i < messages.length; i++) {
    const m = messages[i]!;
    if (m.role !== "tool") continue;
    const name = messages.flatMap((a) => a.toolCalls ?? []).find((c) => c.id === m.toolCallId)?.name ?? m.toolCallId ?? "tool";
    text += `\n[${name}] ${m.content}`;
  }
  return text;
}

function plan(messages: ChatMessage[]): Plan {
  const u = messages.findLastIndex(hasScript);
  if (u < 0) return { text: finalText(messages, undefined, []), calls: [] };
  const script = parseScript(messages[u]!.content);
  const afterU = messages.slice(u + 1);
  const last = messages.length - 1;
  const stepMode = last === u || messages[last]!.role === "tool";
  if (stepMode) {
    const s = afterU.filter(callsTools).length + 1;
    const step = script.steps[s - 1];
    if (step || script.loops.length) {
      const users = messages.filter((m) => m.role === "user").length;
      const calls = [...(step?.calls ?? []), ...script.loops].map((c, i) => ({ id: `call_${users}_${s}_${i + 1}`, name: c.name, arguments: c.args }));
      return { text: step?.say.join("\n") ?? "", calls };
    }
  }
  return { text: finalText(messages, script, afterU), calls: [] };
}

/** Where to cut arguments in two, never between the halves of a surrogate pair. */
function half(text: string): number {
  const mid = Math.floor(text.length / 2);
  const code = text.charCodeAt(mid - 1);
  return code >= 0xd800 && code <= 0xdbff ? mid + 1 : mid;
}

/** Deterministic provider: streams the task back word by word, or plays a tool-call script. */
export default definePlugin({
  name: "echo",
  kind: "llm-provider",
  configSchema: Options,
  setup({ options }) {
    const { tokenDelayMs } = options;
    const pause = async (signal: AbortSignal): Promise<void> => {
      if (signal.aborted) throw abortReason(signal);
      if (tokenDelayMs > 0) {
        try {
          await sleep(tokenDelayMs, undefined, { signal });
        } catch {
          throw abortReason(signal);
        }
      }
    };
    return {
      capabilities: { tools: true },

      async *stream(req: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderChunk> {
        const { text, calls } = plan(req.messages);
        const pieces = words(text);
        const limit = req.maxTokens ?? Infinity;
        let sent = 0;
        for (const word of pieces) {
          if (sent >= limit) break;
          await pause(signal);
          sent++;
          yield { type: "delta", text: word };
        }
        const made: ToolCall[] = [];
        if (sent === pieces.length) {
          for (const call of calls) {
            if (sent >= limit) break;
            await pause(signal);
            sent++;
            const index = made.length;
            const cut = half(call.arguments);
            yield { type: "tool_call_delta", index, id: call.id, name: call.name, argumentsDelta: call.arguments.slice(0, cut) };
            yield { type: "tool_call_delta", index, argumentsDelta: call.arguments.slice(cut) };
            made.push(call);
          }
        }
        for (let index = 0; index < made.length; index++) yield { type: "tool_call", index, call: made[index]! };
        const input = req.messages.reduce((n, m) => n + countWords(m.content), 0);
        const whole = sent === pieces.length + calls.length;
        yield {
          type: "finish",
          finishReason: !whole ? "length" : made.length ? "tool_calls" : "stop",
          usage: { inputTokens: input, outputTokens: sent },
          model: req.model,
        };
      },
    };
  },
});
