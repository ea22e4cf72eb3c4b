import { Code, ErrorReason, type EventType, reasonOf, type RunEvent } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import { codeName, toConnectError } from "../errors.ts";
import type { CallInfo } from "../executor/context.ts";
import type { ResumeState } from "../executor/resume.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import type { SessionManager } from "../sessions/manager.ts";
import type { ParkedRuns } from "./parked.ts";
import { keepPartialTurn } from "./partial-turn.ts";
import type { RunLog } from "./run-log.ts";
import type { CancelMode, PendingCall, RunRecord, RunStore } from "./types.ts";

/** A run going on from its journal. */
export interface Resume {
  state: ResumeState;
  events: RunEvent[];
}

/** A run this replica is running. */
export interface LocalRun {
  log: RunLog;
  controller: AbortController;
  done: Promise<void>;
  cancel?: CancelMode;
  /** Stopped at shutdown to be taken over by another replica: nothing ends it in the journal. */
  handedOver?: boolean;
}

/** What running one run here needs from the replica's RunManager. */
export interface ExecuteDeps {
  store: RunStore;
  live: LiveRuntime;
  sessions: SessionManager;
  log: Logger;
  parked: ParkedRuns;
  /** Publishes a RUN_* event about `run`. */
  publish(type: EventType, run: RunRecord, data: Record<string, unknown>): void;
  /** Logs that the run is no longer this replica's (it stops here). */
  lost(runId: string, err: unknown): void;
  /** Resolves once the runs ahead of this one in its session have finished. */
  waitFor(ahead: RunRecord[], signal: AbortSignal): Promise<void>;
}

/**
 * Runs one run on this replica through the current generation's executor:
 * waits its turn in the session, journals every event (a barrier before the
 * run goes on), parks it, completes it, or ends it as cancelled, failed or
 * handed over, each once in the journal.
 */
export async function executeRun(
  d: ExecuteDeps,
  run: RunRecord,
  entry: LocalRun,
  headers: CallInfo["header"],
  ahead: RunRecord[],
  resume?: Resume,
): Promise<void> {
  const { log } = entry;
  try {
    for (let waiting = ahead; waiting.length;) {
      await d.waitFor(waiting, entry.controller.signal);
      try {
        await log.flush({ status: "running" });
        break;
      } catch (err) {
        // A run queued on another replica took the session first: wait for it in turn.
        if (!isSessionBusy(err)) throw err;
        waiting = (await d.store.active(run.sessionId)).filter((r) => r.id !== run.id && r.status !== "queued");
      }
    }
    if (resume?.state.restartedStep !== undefined) await log.push({ type: "step_restarted", step: resume.state.restartedStep });
    const gen = d.live.current;
    gen.enter();
    try {
      const call: CallInfo = {
        signal: entry.controller.signal,
        header: headers,
        runId: run.id,
        ...(run.settings.startedBy ? { principal: run.settings.startedBy } : {}),
      };
      // The journal keeps no deltas: each step's text, as it left the onion, goes with its step_finished.
      let stepText = "";
      const input = run.settings.callerTools.length ? { ...run.input, callerTools: run.settings.callerTools } : run.input;
      for await (const event of gen.parts.executor.stream(input, call, resume && { state: resume.state, journal: resume.events })) {
        // A resumed run has started already: its journal says so once.
        if (resume && event.type === "started") continue;
        if (event.type === "completed") {
          await log.push(event, { status: "completed", result: event.result, release: true });
          d.publish("RUN_COMPLETED", run, { runId: run.id, lastSeq: log.lastSeq });
          return;
        }
        if (event.type === "waiting") {
          // Parked: the lease goes, no process holds the run; a decision on any replica (or the approvals' expiry) wakes it.
          const pending = d.parked.pending(event);
          // The journaled event says when each approval expires, as the run's pending list does.
          const expiring = { ...event, pending: event.pending.map((p) => ({ ...p, ...expiryOf(pending, p.toolCallId) })) };
          await log.push(expiring, { status: "waiting", pending, release: true });
          d.publish("RUN_WAITING", run, { runId: run.id, toolCallIds: pending.map((p) => p.call.id) });
          return;
        }
        if (event.type === "delta") stepText += event.text;
        else if (event.type === "step_started") stepText = "";
        await log.push(event.type === "step_finished" ? { ...event, text: stepText } : event);
      }
    } finally {
      gen.leave();
    }
  } catch (err) {
    if (entry.handedOver) {
      // What it did is journaled; the lease goes now, so another replica takes it over at once.
      await log.flush({ release: true }).catch((e: unknown) => d.lost(run.id, e));
      d.log.info({ run: run.id }, "run handed over at shutdown");
      return;
    }
    if (entry.cancel) {
      // Interrupt keeps the turn so far; rollback (and a run that never got going) keeps nothing.
      if (entry.cancel === "interrupt")
        await keepPartialTurn(d.store, d.sessions, run, log).catch((e: unknown) =>
          d.log.warn({ err: e, run: run.id }, "could not store an interrupted run's turn"),
        );
      await log.push({ type: "cancelled", mode: entry.cancel }, { status: "cancelled", release: true }).catch((e: unknown) => d.lost(run.id, e));
      d.publish("RUN_CANCELLED", run, { runId: run.id, mode: entry.cancel });
      return;
    }
    const error = toConnectError(err);
    if (error.code === Code.Aborted && reasonOf(error)?.reason === ErrorReason.RUN_NOT_OWNED) return d.lost(run.id, error);
    const failure = { code: error.code, message: error.rawMessage, reason: reasonOf(error)?.reason ?? codeName(error.code) };
    await log.push({ type: "failed", error: failure }, { status: "failed", error: failure, release: true }).catch((e: unknown) => d.lost(run.id, e));
    d.publish("RUN_FAILED", run, { runId: run.id, code: codeName(error.code), message: error.rawMessage });
  }
}

/** A refusal because the session has a run going (SESSION_BUSY). */
export function isSessionBusy(err: unknown): boolean {
  return reasonOf(err)?.reason === ErrorReason.SESSION_BUSY;
}

function expiryOf(pending: readonly PendingCall[], toolCallId: string): { expireAt?: number } {
  const at = pending.find((p) => p.call.id === toolCallId)?.expireAt;
  return at === undefined ? {} : { expireAt: at };
}
