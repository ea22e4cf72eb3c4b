import type { AgentRunResult, ChatMessage, RunEvent, ToolCall, ToolCallRecord } from "@qingyu/plugin-api";

interface StepSeen {
  text: string;
  /** Tool call ids in the model's order (a call is first seen as its tool_call or, when it did not run, its tool_result). */
  order: string[];
  calls: Map<string, ToolCall>;
  results: Map<string, ToolCallRecord>;
}

/**
 * Builds the messages a turn adds to its session from the events that left
 * the onion, so what is stored is what the client was given (a middleware
 * that rewrites text rewrites the history too): per step with tool calls,
 * the assistant's message with its calls and one tool message per call in
 * the model's order; then the final answer.
 */
export class TurnRecorder {
  private readonly steps = new Map<number, StepSeen>();
  private current: StepSeen | undefined;

  see(event: RunEvent): void {
    switch (event.type) {
      case "step_started":
        this.current = { text: "", order: [], calls: new Map(), results: new Map() };
        this.steps.set(event.step, this.current);
        break;
      case "delta":
        if (this.current) this.current.text += event.text;
        break;
      case "step_finished":
        // Replayed from a run's journal, a step has no deltas: its text comes whole.
        if (event.text !== undefined && !this.current?.text) this.step(event.step).text = event.text;
        break;
      case "waiting": {
        // A parked step's calls, in the model's order: their results come once the run goes on.
        const step = this.step(event.step);
        for (const call of event.calls) {
          if (!step.calls.has(call.id)) step.order.push(call.id);
          step.calls.set(call.id, call);
        }
        break;
      }
      case "tool_call": {
        const step = this.step(event.step);
        if (!step.calls.has(event.call.id)) step.order.push(event.call.id);
        step.calls.set(event.call.id, event.call);
        break;
      }
      case "tool_result": {
        const step = this.step(event.step);
        const { record } = event;
        if (!step.calls.has(record.id)) {
          step.order.push(record.id);
          step.calls.set(record.id, { id: record.id, name: record.name, arguments: record.arguments });
        }
        step.results.set(record.id, record);
        break;
      }
    }
  }

  /** The turn's messages: the task, what the steps said and called, the answer. */
  messages(task: string, result: AgentRunResult): ChatMessage[] {
    const turn: ChatMessage[] = [{ role: "user", content: task }];
    if (!this.steps.size) {
      turn.push({ role: "assistant", content: result.output });
      return turn;
    }
    const numbers = [...this.steps.keys()].sort((a, b) => a - b);
    for (const [i, n] of numbers.entries()) {
      const step = this.steps.get(n)!;
      const last = i === numbers.length - 1;
      if (!step.order.length) {
        // An answer the output schema refused was repaired by a later step: only the last answer is kept.
        if (last) turn.push({ role: "assistant", content: result.structuredOutput !== undefined || result.validationErrors ? result.output : step.text });
        continue;
      }
      turn.push({ role: "assistant", content: step.text, toolCalls: step.order.map((id) => step.calls.get(id)!) });
      for (const id of step.order) {
        turn.push({ role: "tool", toolCallId: id, content: step.results.get(id)?.output ?? "no result: the run ended before this call finished" });
      }
    }
    return turn;
  }

  private step(n: number): StepSeen {
    let step = this.steps.get(n);
    if (!step) this.steps.set(n, (step = { text: "", order: [], calls: new Map(), results: new Map() }));
    return step;
  }
}
