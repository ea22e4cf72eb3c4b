import { Code, type ProviderChunk, ProviderError, type ToolCall } from "@qingyu/plugin-api";
import { PREFIX } from "./errors.ts";

/** One entry of a chunk's `delta.tool_calls` (or of a message's `tool_calls`) as OpenAI-compatible servers send it. */
export interface ToolCallFragment {
  index?: number;
  id?: string | null;
  type?: string;
  function?: { name?: string | null; arguments?: unknown } | null;
}

/** A tool_call_delta chunk. */
type ToolCallDeltaChunk = Extract<ProviderChunk, { type: "tool_call_delta" }>;
/** A complete tool_call chunk. */
type ToolCallChunk = Extract<ProviderChunk, { type: "tool_call" }>;

interface PendingCall {
  index: number;
  id: string;
  name: string;
  args: string;
  /** A high surrogate that ended the last fragment: held back so no delta carries half a character. */
  held: string;
}

/**
 * Assembles the tool calls of one answer from their fragments, keyed by
 * `index`: id and name come in a call's first fragment, arguments in pieces,
 * and several calls may interleave. What the upstream sends is passed on as it
 * is — arguments that are not JSON included, since the runtime validates them
 * and tells the model — with two exceptions that keep the conversation valid:
 * a call without an id gets one, and a call with no arguments at all gets `{}`.
 */
export class ToolCallAssembler {
  private readonly calls: PendingCall[] = [];
  private deltas: ToolCallDeltaChunk[] = [];

  /** Whether fragments are waiting in `takeDeltas`. */
  get hasDeltas(): boolean {
    return this.deltas.length > 0;
  }

  /** Reads one fragment, queueing the delta chunk it makes (if it carried anything). */
  add(fragment: ToolCallFragment): void {
    const fn = fragment.function;
    const call = this.callFor(fragment);
    let id: string | undefined;
    let name: string | undefined;
    // Some servers repeat id and name in every fragment: only the first sighting is news.
    if (!call.id && fragment.id) call.id = id = fragment.id;
    if (!call.name && fn?.name) call.name = name = fn.name;
    const raw = argumentsText(fn?.arguments);
    call.args += raw;
    let piece = call.held + raw;
    call.held = "";
    // An emoji the server escaped as \uD83D\uDE00 may be cut between the two halves of its pair.
    const last = piece.charCodeAt(piece.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) {
      call.held = piece.slice(-1);
      piece = piece.slice(0, -1);
    }
    if (id === undefined && name === undefined && !piece) return;
    const delta: ToolCallDeltaChunk = { type: "tool_call_delta", index: call.index, argumentsDelta: piece };
    if (id !== undefined) delta.id = id;
    if (name !== undefined) delta.name = name;
    this.deltas.push(delta);
  }

  /** The delta chunks queued since the last take, in the order their fragments came. */
  takeDeltas(): ToolCallDeltaChunk[] {
    const out = this.deltas;
    this.deltas = [];
    return out;
  }

  /**
   * The complete calls, in index order. A call that never got a name cannot be
   * run or answered: the upstream broke the protocol, and that is its failure.
   */
  complete(retryable: boolean): ToolCallChunk[] {
    const calls = [...this.calls].sort((a, b) => a.index - b.index);
    const nameless = calls.find((c) => !c.name);
    if (nameless) {
      throw new ProviderError(`${PREFIX}: upstream sent a tool call with no function name (tool call index ${nameless.index})`, Code.Unavailable, retryable);
    }
    return calls.map((c) => ({ type: "tool_call", index: c.index, call: { id: c.id || newCallId(), name: c.name, arguments: c.args || "{}" } }));
  }

  private callFor(fragment: ToolCallFragment): PendingCall {
    const calls = this.calls;
    let index = fragment.index;
    if (typeof index !== "number") {
      // A server that numbers nothing (some compatibles): a new id starts a new call, else it continues the last.
      const last = calls.at(-1);
      if (last && !(fragment.id && last.id && fragment.id !== last.id)) return last;
      index = calls.length ? Math.max(...calls.map((c) => c.index)) + 1 : 0;
    }
    for (let i = 0; i < calls.length; i++) if (calls[i]!.index === index) return calls[i]!;
    const call: PendingCall = { index, id: "", name: "", args: "", held: "" };
    calls.push(call);
    return call;
  }
}

/** The tool calls of a non-streamed answer's message, by the same rules as a streamed one's. */
export function messageToolCalls(toolCalls: readonly ToolCallFragment[] | null | undefined): ToolCall[] | undefined {
  if (!toolCalls?.length) return undefined;
  const assembler = new ToolCallAssembler();
  toolCalls.forEach((call, i) => assembler.add({ ...call, index: i }));
  return assembler.complete(true).map((c) => c.call);
}

/** Arguments are a JSON string on the wire; a server that sends the object itself gets it written back as JSON. */
function argumentsText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === undefined || value === null) return "";
  return JSON.stringify(value);
}

function newCallId(): string {
  return `call_${globalThis.crypto.randomUUID().replaceAll("-", "")}`;
}
