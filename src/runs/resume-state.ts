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
  // With the index of the call's latest tool_call: a waiting event after it asked a person about it again.
  const dispatched = new Map<string, { step: number; call: ToolCall; at: number }>();
  for (const [at, event] of events.entries()) {
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
        dispatched.set(event.call.id, { step: event.step, call: event.call, at });
        break;
      case "tool_result":
        dispatched.delete(event.record.id);
        state.records.push(event.record);
        break;
    }
  }
  if (open !== undefined && !finishedSteps.has(open)) state.restartedStep = open;
  const decisions = new Map<string, Decision>();
  for (const p of pending) if (p.decision) decisions.set(p.call.id, p.decision);
  const waitingAt = events.findLastIndex((e) => e.type === "waiting");
  const lastWaiting = events[waitingAt];
  const waitedOn = new Set(lastWaiting?.type === "waiting" ? lastWaiting.calls.map((c) => c.id) : []);
  state.unfinished = [...dispatched.values()].map(({ step, call, at }) => {
    // Parked after it was dispatched: the decision is on running it again (runs.unknownOutcome: approval), not the approval it ran with.
    const decision = waitingAt > at && waitedOn.has(call.id) ? decisions.get(call.id) : undefined;
    return decision ? { step, call, decision } : { step, call };
  });
  if (lastWaiting?.type === "waiting") {
    // Its calls with no result and no dispatch journaled since it parked are prepared again; an unfinished one is settled as such.
    const settled = new Set([...state.records.map((r) => r.id), ...dispatched.keys()]);
    const calls = lastWaiting.calls.filter((c) => !settled.has(c.id));
    if (calls.length) state.parked = { step: lastWaiting.step, calls };
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
  if (decisions.size) state.decisions = decisions;
  return { state, events: events.filter((e) => e.type !== "tool_call" || !state.unfinished.some((u) => u.call.id === e.call.id)) };
}

/** An event of the onion (what the executor yields), not one only a run's log has. */
export function isRunEvent(event: SequencedEvent["event"]): event is RunEvent {
  return !["accepted", "step_restarted", "failed", "cancelled"].includes(event.type);
}
