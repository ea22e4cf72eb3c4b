import type { RunEvent, ToolCall } from "@qingyu/plugin-api";
import type { ResumeState } from "../executor/resume.ts";
import { TurnRecorder } from "../executor/turn-recorder.ts";
import type { Decision, PendingCall, SequencedEvent } from "./types.ts";

/**
 * Where a run stands by its journal: the state the loop goes on from, and the
 * onion's events the journal holds (so the stored turn begins with them).
 */
export function resumeFromJournal(journal: readonly SequencedEvent[], pending: readonly PendingCall[] = []): { state: ResumeState; events: RunEvent[] } {
  const events: RunEvent[] = [];
  for (const { event } of journal) if (isRunEvent(event)) events.push(event);
  const state: ResumeState = { messages: [], records: [], steps: 0, usage: { inputTokens: 0, outputTokens: 0 }, output: "", unfinished: [] };
  const finishedSteps = new Set<number>();
  let open: number | undefined;
  const dispatched = new Map<string, { step: number; call: ToolCall }>();
  for (const event of events) {
    switch (event.type) {
      case "step_started":
        open = event.step;
        break;
      case "step_finished":
        finishedSteps.add(event.step);
        open = undefined;
        state.steps = Math.max(state.steps, event.step);
        state.usage.inputTokens += event.usage.inputTokens;
        state.usage.outputTokens += event.usage.outputTokens;
        state.output += event.text ?? "";
        break;
      case "tool_call":
        dispatched.set(event.call.id, { step: event.step, call: event.call });
        break;
      case "tool_result":
        dispatched.delete(event.record.id);
        state.records.push(event.record);
        break;
    }
  }
  if (open !== undefined && !finishedSteps.has(open)) state.restartedStep = open;
  state.unfinished = [...dispatched.values()];
  const lastWaiting = events.findLast((e) => e.type === "waiting");
  // Parked and not gone on since (no result of its calls journaled after it): the step is prepared again.
  if (lastWaiting?.type === "waiting" && !lastWaiting.calls.some((c) => state.records.some((r) => r.id === c.id))) {
    state.parked = { step: lastWaiting.step, calls: lastWaiting.calls };
  }
  const last = events.findLast((e) => e.type === "step_finished");
  if (last?.type === "step_finished" && last.toolCalls === 0 && state.restartedStep === undefined && !state.unfinished.length && !state.parked) {
    state.answered = last.text ?? "";
  }
  // The messages of the finished steps, as the turn will store them; the answer to come is not among them.
  const recorder = new TurnRecorder();
  for (const event of events) if (event.type !== "step_started" || finishedSteps.has(event.step)) recorder.see(event);
  const turn = recorder.messages("", { success: true, output: "", model: "", finishReason: "", usage: state.usage, durationMs: 0, metadata: {} });
  // Drop the task (it is the prompt's own) and the empty closing answer TurnRecorder adds for a step without calls.
  state.messages = turn.slice(1).filter((m, i, all) => !(i === all.length - 1 && m.role === "assistant" && !m.toolCalls?.length && !m.content));
  // Results of calls still unfinished or parked come after: their tool messages are added once they are settled.
  const later = new Set([...state.unfinished.map((u) => u.call.id), ...(state.parked?.calls.map((c) => c.id) ?? [])]);
  state.messages = state.messages.filter((m) => m.role !== "tool" || !later.has(m.toolCallId ?? ""));
  const decisions = new Map<string, Decision>();
  for (const p of pending) if (p.decision) decisions.set(p.call.id, p.decision);
  if (decisions.size) state.decisions = decisions;
  return { state, events: events.filter((e) => e.type !== "tool_call" || !state.unfinished.some((u) => u.call.id === e.call.id)) };
}

/** An event of the onion (what the executor yields), not one only a run's log has. */
export function isRunEvent(event: SequencedEvent["event"]): event is RunEvent {
  return !["accepted", "step_restarted", "failed", "cancelled"].includes(event.type);
}
