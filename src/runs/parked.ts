import { Code, ConnectError, ErrorReason, type RunEvent, withReason } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import type { Decision, PendingCall, RunRecord, RunStore } from "./types.ts";

/** What parked runs are handled with; wired by the RunManager. */
export interface ParkedDeps {
  store: RunStore;
  /** Takes a run that is running with no owner over on this replica (the RunManager's takeover). */
  takeOver: (runId: string) => Promise<void>;
  log: Logger;
  /** runs.approvalTimeoutSeconds, in ms. */
  approvalTimeoutMs: number;
}

// Runs whose approvals expire, refused per renewal: a backlog (a replica that was down) is worked off over a few.
const EXPIRE_AT_ONCE = 100;

/**
 * Runs parked for a person or the caller: what they wait on, the decisions and
 * answers that wake them (on this replica, at once, when nothing is left
 * undecided), and approvals nobody decided in time, refused so the run goes on.
 */
export class ParkedRuns {
  constructor(private readonly deps: ParkedDeps) {}

  /** What a parked run waits on, from its `waiting` event: approvals expire runs.approvalTimeoutSeconds from now, callers' answers never. */
  pending(event: RunEvent & { type: "waiting" }, now = Date.now()): PendingCall[] {
    return event.pending.map((p) => ({
      step: event.step,
      call: event.calls.find((c) => c.id === p.toolCallId)!,
      reason: p.reason,
      ...(p.note ? { note: p.note } : {}),
      ...(p.reason === "approval" ? { expireAt: now + this.deps.approvalTimeoutMs } : {}),
    }));
  }

  /**
   * Decides a call a parked run waits on; the run goes on here at once when that was the last one.
   * After its approval expired the call is decided already (refused): `decided` false.
   */
  async decide(run: RunRecord, toolCallId: string, decision: Decision): Promise<{ decided: boolean; run: RunRecord }> {
    const outcome = await this.deps.store.decide(run.id, toolCallId, decision);
    if (outcome === "absent") {
      throw withReason(
        new ConnectError(`run "${run.id}" waits on no tool call "${toolCallId}" (${run.status})`, Code.FailedPrecondition),
        ErrorReason.RUN_NOT_WAITING,
        { run_id: run.id, tool_call_id: toolCallId },
      );
    }
    return { decided: outcome === "decided", run: await this.wake(run) };
  }

  /** Answers calls of the caller's own tools; the run goes on here at once when none is left unanswered. Which ids were taken. */
  async answer(run: RunRecord, results: readonly { toolCallId: string; output: string; isError: boolean }[]): Promise<{ accepted: string[]; run: RunRecord }> {
    const accepted: string[] = [];
    for (const r of results) {
      const waitsOnIt = run.pending.some((p) => p.call.id === r.toolCallId && p.reason === "caller");
      if (!waitsOnIt) {
        throw withReason(
          new ConnectError(`run "${run.id}" waits on no call "${r.toolCallId}" of the caller's tools`, Code.FailedPrecondition),
          ErrorReason.RUN_NOT_WAITING,
          { run_id: run.id, tool_call_id: r.toolCallId },
        );
      }
      const outcome = await this.deps.store.decide(run.id, r.toolCallId, { approved: true, result: { output: r.output, isError: r.isError } });
      if (outcome === "decided") accepted.push(r.toolCallId);
    }
    return { accepted, run: await this.wake(run) };
  }

  /**
   * Refuses approvals nobody decided in time (every replica, each renewal); a run left with
   * nothing undecided becomes an orphan, which the renewal's adoption takes over.
   */
  async expire(now = Date.now()): Promise<void> {
    const runs = await this.deps.store.expireApprovals(now, EXPIRE_AT_ONCE);
    if (runs.length) this.deps.log.info({ runs }, "approvals nobody decided in time refused");
  }

  /**
   * The run as it is now, taken over here first when nothing is left undecided (a decision, an
   * answer, or an expiry the store applied with them made it running with no owner).
   */
  private async wake(run: RunRecord): Promise<RunRecord> {
    const now = (await this.deps.store.get(run.id)) ?? run;
    if (now.status !== "running" || now.owner) return now;
    await this.deps.takeOver(run.id);
    return (await this.deps.store.get(run.id)) ?? now;
  }
}

/** A pending list with every undecided approval expired at `now` refused; `ready` once none is left undecided (the stores share the rule). */
export function expirePending(pending: readonly PendingCall[], now: number): { pending: PendingCall[]; expired: number; ready: boolean } {
  let expired = 0;
  const next = pending.map((p) => {
    if (p.decision || p.reason !== "approval" || p.expireAt === undefined || p.expireAt > now) return p;
    expired++;
    return { ...p, decision: expiredDecision(p.expireAt) };
  });
  return { pending: next, expired, ready: expired > 0 && next.every((p) => p.decision) };
}

/** The refusal an approval nobody decided by `expireAt` gets; the model reads its message. */
export function expiredDecision(expireAt: number): Decision {
  return { approved: false, expired: true, message: `the approval expired: nobody decided by ${new Date(expireAt).toISOString()}` };
}

/** When the earliest undecided approval of `pending` expires (epoch ms), if any: what the store indexes to find expired ones. */
export function nextExpiry(pending: readonly PendingCall[]): number | null {
  let next: number | null = null;
  for (const p of pending) if (!p.decision && p.reason === "approval" && p.expireAt !== undefined && (next === null || p.expireAt < next)) next = p.expireAt;
  return next;
}
