import type { AgentRunResult, Principal, RunEvent, ToolCall, ToolSpec } from "@qingyu/plugin-api";
import type { ExecuteInput } from "../executor/context.ts";
import type { Page } from "../sessions/types.ts";

/** Where a run is (the proto's RunStatus without its prefix, lower-case). */
export type RunStatus = "queued" | "running" | "waiting" | "completed" | "failed" | "cancelled";

/** The statuses a run never leaves. */
export const FINISHED_STATUSES: readonly RunStatus[] = ["completed", "failed", "cancelled"];

/** What a run does: an Execute request, as the executor takes one. */
export type RunInput = ExecuteInput;

/** How a run was asked to run. */
export interface RunSettings {
  background: boolean;
  onDisconnect: "continue" | "cancel";
  onSessionBusy: "reject" | "enqueue" | "interrupt" | "rollback";
  /** Tools the caller runs itself (answered with SubmitToolResults). */
  callerTools: ToolSpec[];
  /** The principal its start was admitted with: a replica that takes the run over runs it as them (their headers are gone). */
  startedBy?: Principal;
}

import type { Decision } from "../executor/resume.ts";
export type { Decision };

/** A tool call a parked run waits on. */
export interface PendingCall {
  step: number;
  call: ToolCall;
  reason: "approval" | "caller";
  /** Why a person is asked, when more than the tool's own needsApproval (a middleware's reason, an unknown outcome). */
  note?: string;
  /** Epoch ms (the parking replica's clock) at or after which an undecided approval is refused (runs.approvalTimeoutSeconds). */
  expireAt?: number;
  /** Set once decided: the first decision stands. */
  decision?: Decision;
}

/** How a run failed, as its RunFailed event says. */
interface RunError {
  code: number;
  message: string;
  reason: string;
}

/** What a cancel keeps. */
export type CancelMode = "interrupt" | "rollback";

/**
 * One event of a run's log. The onion's events, plus what only a run has:
 * its acceptance, parking, a step asked again after failover, failure and cancel.
 */
export type RunLogEvent =
  RunEvent | { type: "accepted" } | { type: "step_restarted"; step: number } | { type: "failed"; error: RunError } | { type: "cancelled"; mode: CancelMode };

/** An event with its place in the run: `seq` counts every event from 1, text deltas too. */
export interface SequencedEvent {
  seq: number;
  /** Epoch ms. */
  time: number;
  event: RunLogEvent;
}

/** A run as the store keeps it. */
export interface RunRecord {
  id: string;
  userId: string;
  agentId: string;
  sessionId: string;
  /** "" when the caller gave none. */
  idempotencyKey: string;
  status: RunStatus;
  input: RunInput;
  settings: RunSettings;
  /** Epoch ms. */
  createTime: number;
  updateTime: number;
  /** The seq of its latest event (journaled or not). */
  lastSeq: number;
  result?: AgentRunResult;
  error?: RunError;
  pending: PendingCall[];
  /** The replica running it, while it runs. */
  owner?: string;
  /** Epoch ms its owner's lease ends; another replica may take it over after that. */
  leaseUntil?: number;
  /** A cancel asked for on any replica; the owner acts on it. */
  cancelRequested?: CancelMode;
}

/** A run to create; the store fills times and seq, and starts its owner's lease (`leaseMs`) on its own clock. */
export type NewRun = Omit<RunRecord, "createTime" | "updateTime" | "lastSeq" | "pending" | "result" | "error" | "cancelRequested" | "leaseUntil"> & {
  leaseMs?: number;
};

/** What may change on a run with an append. */
export interface RunUpdate {
  status?: RunStatus;
  result?: AgentRunResult;
  error?: RunError;
  pending?: PendingCall[];
  /** Clears the owner and lease (the run is parked or finished). */
  release?: boolean;
}

/** What a lease renewal found. */
export interface Renewal {
  /** Runs the owner no longer holds (taken over, finished elsewhere, or gone). */
  lost: string[];
  /** Cancels asked for on any replica of runs it still holds: the owner acts on them. */
  cancels: { runId: string; mode: CancelMode }[];
}

/** Which runs ListRuns wants. */
export interface RunFilter {
  userId?: string;
  sessionId?: string;
  /** Empty: every status. */
  statuses?: readonly RunStatus[];
}

/**
 * The runs journal. Every event of a run but its text deltas is kept, in
 * order, before the run goes on: what a run did is what its journal says.
 */
export interface RunStore {
  /**
   * Creates a run with its first events (`accepted`), or returns the run an
   * earlier create with the same user and non-empty idempotency key made
   * (`created: false`, nothing written).
   */
  create(run: NewRun, first: readonly SequencedEvent[]): Promise<{ run: RunRecord; created: boolean }>;
  get(runId: string): Promise<RunRecord | undefined>;
  list(filter: RunFilter, pageSize: number, pageToken: string): Promise<Page<RunRecord>>;
  /**
   * Journals `events` (ascending seq, after every seq already there; text
   * deltas only advance lastSeq) and applies `update`, in one write, only
   * while `owner` still owns the run: otherwise it rejects with ABORTED
   * (reason RUN_NOT_OWNED) and writes nothing.
   */
  append(runId: string, owner: string, lastSeq: number, events: readonly SequencedEvent[], update?: RunUpdate): Promise<void>;
  /** The journaled events after `afterSeq`, in order, at most `limit`. */
  events(runId: string, afterSeq: number, limit: number): Promise<SequencedEvent[]>;
  /** The session's runs that are queued, running or waiting, oldest first. */
  active(sessionId: string): Promise<RunRecord[]>;
  /** Takes `runId` for `owner` until now + leaseMs when it is unowned or its lease ended; false when another holds it, or it has finished or does not exist. */
  acquire(runId: string, owner: string, leaseMs: number): Promise<boolean>;
  /** Extends the leases `owner` holds, in one round trip: the ids it no longer holds, and the cancels asked for (any replica) of those it does. */
  renew(owner: string, runIds: readonly string[], leaseMs: number): Promise<Renewal>;
  /** Runs running or queued whose lease ended (their replica died), oldest first, at most `limit`. */
  orphans(limit: number): Promise<RunRecord[]>;
  /**
   * Decides one pending call of a waiting run, once: "decided" (and when it was the
   * last undecided one, the run becomes running with no owner, for any replica to take
   * over), "already" when it had been decided (also after the run went on or ended),
   * "absent" when the run has no such undecided call.
   */
  decide(runId: string, toolCallId: string, decision: Decision, now?: number): Promise<"decided" | "already" | "absent">;
  /**
   * Refuses (as `expiredDecision` says) every undecided approval of a waiting run whose
   * expireAt is at or before `now` (epoch ms), at most `limit` runs a call; a run left with
   * no undecided call becomes running with no owner, for orphan adoption to take over.
   * The ids of the runs it changed. `decide` applies the same expiry to its run first (at
   * `now`, default the current time), so a decision after expiry finds the call "already" decided.
   */
  expireApprovals(now: number, limit: number): Promise<string[]>;
  /** Records a cancel for the owner to act on (any replica); false when the run has finished. */
  requestCancel(runId: string, mode: CancelMode): Promise<boolean>;
  /** Deletes finished runs last updated before `before` (epoch ms) and their journals; how many. */
  prune(before: number): Promise<number>;
  close(): Promise<void>;
}
