import { TurnRecorder } from "../executor/turn-recorder.ts";
import type { SessionManager } from "../sessions/manager.ts";
import { isRunEvent } from "./resume-state.ts";
import type { RunLog } from "./run-log.ts";
import type { RunRecord, RunStore } from "./types.ts";
import { readJournal } from "./journal-read.ts";

/** Stores what an interrupted run did (its journaled steps and tool calls) as its session's turn. */
export async function keepPartialTurn(store: RunStore, sessions: SessionManager, run: RunRecord, log: RunLog): Promise<void> {
  if (!run.sessionId) return;
  await log.flush();
  const recorder = new TurnRecorder();
  // A parked step's calls have no results to keep: only what ran is the turn.
  for (const { event } of await readJournal(store, run.id, 0)) if (isRunEvent(event) && event.type !== "waiting") recorder.see(event);
  const turn = recorder.messages(run.input.task, {
    success: false,
    output: "",
    model: "",
    finishReason: "cancelled",
    usage: { inputTokens: 0, outputTokens: 0 },
    durationMs: 0,
    metadata: {},
  });
  // A turn that got no further than the task holds nothing worth keeping.
  if (turn.length > 1 && turn.some((m) => m.role !== "user" && (m.content || m.toolCalls?.length)))
    await sessions.appendTurn(
      run.sessionId,
      turn.filter((m) => m.role !== "assistant" || m.content || m.toolCalls?.length),
    );
}
