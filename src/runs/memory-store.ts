import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import { expirePending } from "./parked.ts";
import { decidePending } from "./pending.ts";
import { decodePageToken, encodePageToken } from "../sessions/page-token.ts";
import type { Page } from "../sessions/types.ts";
import {
  FINISHED_STATUSES,
  type Decision,
  type CancelMode,
  type NewRun,
  type Renewal,
  type RunFilter,
  type RunRecord,
  type RunStore,
  type RunUpdate,
  type SequencedEvent,
} from "./types.ts";

/** The journal of this process only: runs die with it (the server warns at start). */
export class MemoryRunStore implements RunStore {
  private readonly runs = new Map<string, RunRecord>();
  private readonly journals = new Map<string, SequencedEvent[]>();
  /** `${userId}\n${key}` → run id. */
  private readonly keys = new Map<string, string>();

  constructor(private readonly now: () => number = Date.now) {}

  create(run: NewRun, first: readonly SequencedEvent[]): Promise<{ run: RunRecord; created: boolean }> {
    const key = run.idempotencyKey ? `${run.userId}\n${run.idempotencyKey}` : undefined;
    const known = key ? this.keys.get(key) : undefined;
    if (known) return Promise.resolve({ run: copy(this.runs.get(known)!), created: false });
    const holder = this.holder(run.sessionId, run.id);
    if (holder && (run.status === "running" || run.status === "waiting")) return Promise.reject(sessionBusy(run.sessionId, holder));
    const time = this.now();
    const { leaseMs, ...fields } = structuredClone(run);
    const record: RunRecord = { ...fields, createTime: time, updateTime: time, lastSeq: first.at(-1)?.seq ?? 0, pending: [] };
    if (leaseMs !== undefined) record.leaseUntil = time + leaseMs;
    this.runs.set(run.id, record);
    this.journals.set(
      run.id,
      first.filter(journaled).map((e) => structuredClone(e)),
    );
    if (key) this.keys.set(key, run.id);
    return Promise.resolve({ run: copy(record), created: true });
  }

  get(runId: string): Promise<RunRecord | undefined> {
    const run = this.runs.get(runId);
    return Promise.resolve(run && copy(run));
  }

  async list(filter: RunFilter, pageSize: number, pageToken: string): Promise<Page<RunRecord>> {
    const after = decodePageToken(pageToken);
    const statuses = filter.statuses?.length ? new Set(filter.statuses) : undefined;
    const matching = [...this.runs.values()]
      .filter(
        (r) =>
          (!filter.userId || r.userId === filter.userId) && (!filter.sessionId || r.sessionId === filter.sessionId) && (!statuses || statuses.has(r.status)),
      )
      .sort((a, b) => b.createTime - a.createTime || (a.id < b.id ? 1 : -1))
      .filter((r) => !after || r.createTime < after.time || (r.createTime === after.time && r.id < after.id));
    const items = matching.slice(0, pageSize).map(copy);
    const last = items.at(-1);
    return { items, nextPageToken: matching.length > pageSize && last ? encodePageToken({ time: last.createTime, id: last.id }) : "" };
  }

  append(runId: string, owner: string, lastSeq: number, events: readonly SequencedEvent[], update?: RunUpdate): Promise<void> {
    const run = this.runs.get(runId);
    if (!run || run.owner !== owner) return Promise.reject(notOwned(runId));
    const holder = update?.status === "running" || update?.status === "waiting" ? this.holder(run.sessionId, runId) : undefined;
    if (holder) return Promise.reject(sessionBusy(run.sessionId, holder));
    const journal = this.journals.get(runId)!;
    const top = journal.at(-1)?.seq ?? 0;
    // As PostgreSQL's primary key would: a seq already there is a bug of the writer's, not something to keep twice.
    if (events.some((e, i) => e.seq <= top || (i > 0 && e.seq <= events[i - 1]!.seq)))
      return Promise.reject(new Error(`run "${runId}": events out of order or repeated`));
    for (const e of events) if (journaled(e)) journal.push(structuredClone(e));
    run.lastSeq = Math.max(run.lastSeq, lastSeq, events.at(-1)?.seq ?? 0);
    run.updateTime = this.now();
    applyUpdate(run, update);
    return Promise.resolve();
  }

  events(runId: string, afterSeq: number, limit: number): Promise<SequencedEvent[]> {
    const journal = this.journals.get(runId) ?? [];
    return Promise.resolve(
      journal
        .filter((e) => e.seq > afterSeq)
        .slice(0, limit)
        .map((e) => structuredClone(e)),
    );
  }

  active(sessionId: string): Promise<RunRecord[]> {
    return Promise.resolve(
      [...this.runs.values()]
        .filter((r) => r.sessionId === sessionId && !FINISHED_STATUSES.includes(r.status))
        .sort(oldestFirst)
        .map(copy),
    );
  }

  acquire(runId: string, owner: string, leaseMs: number): Promise<boolean> {
    const run = this.runs.get(runId);
    if (!run || FINISHED_STATUSES.includes(run.status)) return Promise.resolve(false);
    const now = this.now();
    if (run.owner && run.owner !== owner && (run.leaseUntil ?? 0) > now) return Promise.resolve(false);
    run.owner = owner;
    run.leaseUntil = now + leaseMs;
    return Promise.resolve(true);
  }

  renew(owner: string, runIds: readonly string[], leaseMs: number): Promise<Renewal> {
    const renewal: Renewal = { lost: [], cancels: [] };
    const until = this.now() + leaseMs;
    for (const id of runIds) {
      const run = this.runs.get(id);
      if (run?.owner !== owner) {
        renewal.lost.push(id);
        continue;
      }
      run.leaseUntil = until;
      if (run.cancelRequested) renewal.cancels.push({ runId: id, mode: run.cancelRequested });
    }
    return Promise.resolve(renewal);
  }

  orphans(limit: number): Promise<RunRecord[]> {
    const now = this.now();
    return Promise.resolve(
      [...this.runs.values()]
        .filter((r) => (r.status === "running" || r.status === "queued") && (r.leaseUntil ?? 0) <= now)
        .sort(oldestFirst)
        .slice(0, limit)
        .map(copy),
    );
  }

  decide(runId: string, toolCallId: string, decision: Decision, now = Date.now()): Promise<"decided" | "already" | "absent"> {
    const run = this.runs.get(runId);
    if (!run) return Promise.resolve("absent");
    // An approval that expired was refused at its expiry, whether or not a sweep has written it yet.
    this.expire(run, now);
    const outcome = decidePending(run.pending, toolCallId, structuredClone(decision));
    // A decision after the run went on (or ended) finds its call decided: that is a repeat, not an error.
    if (run.status !== "waiting" && outcome.result === "decided") return Promise.resolve("absent");
    if (outcome.result === "decided") {
      run.pending = outcome.pending;
      run.updateTime = this.now();
      if (outcome.ready) run.status = "running";
    }
    return Promise.resolve(outcome.result);
  }

  expireApprovals(now: number, limit: number): Promise<string[]> {
    const changed: string[] = [];
    for (const run of [...this.runs.values()].sort(oldestFirst)) {
      if (changed.length >= limit) break;
      if (this.expire(run, now)) changed.push(run.id);
    }
    return Promise.resolve(changed);
  }

  requestCancel(runId: string, mode: CancelMode): Promise<boolean> {
    const run = this.runs.get(runId);
    if (!run || FINISHED_STATUSES.includes(run.status)) return Promise.resolve(false);
    run.cancelRequested ??= mode;
    return Promise.resolve(true);
  }

  prune(before: number): Promise<number> {
    let n = 0;
    for (const [id, run] of this.runs) {
      if (!FINISHED_STATUSES.includes(run.status) || run.updateTime >= before) continue;
      this.runs.delete(id);
      this.journals.delete(id);
      if (run.idempotencyKey) this.keys.delete(`${run.userId}\n${run.idempotencyKey}`);
      n++;
    }
    return Promise.resolve(n);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Refuses the waiting run's approvals expired at `now`, running with no owner when none is left undecided; whether any was. */
  private expire(run: RunRecord, now: number): boolean {
    if (run.status !== "waiting") return false;
    const { pending, expired, ready } = expirePending(run.pending, now);
    if (!expired) return false;
    run.pending = pending;
    run.updateTime = this.now();
    if (ready) {
      run.status = "running";
      delete run.owner;
      delete run.leaseUntil;
    }
    return true;
  }

  /** The run other than `except` that holds the session (running or waiting), as PostgreSQL's unique index keeps one. */
  private holder(sessionId: string, except: string): string | undefined {
    if (!sessionId) return undefined;
    for (const r of this.runs.values()) if (r.id !== except && r.sessionId === sessionId && (r.status === "running" || r.status === "waiting")) return r.id;
    return undefined;
  }
}

/** FAILED_PRECONDITION SESSION_BUSY: the session already has a run going. */
export function sessionBusy(sessionId: string, runId: string | undefined): ConnectError {
  const error = new ConnectError(`session "${sessionId}" already has a run going${runId ? ` (${runId})` : ""}`, Code.FailedPrecondition);
  return withReason(error, ErrorReason.SESSION_BUSY, { session_id: sessionId, ...(runId ? { run_id: runId } : {}) });
}

/** Text deltas are live only: the journal keeps every other event. */
export function journaled(e: SequencedEvent): boolean {
  return e.event.type !== "delta" && e.event.type !== "tool_call_delta";
}

/** Applies an update to a run record (the stores share the rule). */
function applyUpdate(run: RunRecord, update: RunUpdate | undefined): void {
  if (!update) return;
  if (update.status) run.status = update.status;
  if (update.result) run.result = structuredClone(update.result);
  if (update.error) run.error = { ...update.error };
  if (update.pending) run.pending = structuredClone(update.pending);
  if (update.release) {
    delete run.owner;
    delete run.leaseUntil;
  }
}

/** ABORTED RUN_NOT_OWNED: a replica writing to a run another has taken over. */
export function notOwned(runId: string): ConnectError {
  return withReason(new ConnectError(`run "${runId}" is no longer owned by this replica`, Code.Aborted), ErrorReason.RUN_NOT_OWNED, { run_id: runId });
}

// Ties in one millisecond go by id, as PostgreSQL's order by create_time, id does.
const oldestFirst = (a: RunRecord, b: RunRecord) => a.createTime - b.createTime || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function copy(run: RunRecord): RunRecord {
  return structuredClone(run);
}
