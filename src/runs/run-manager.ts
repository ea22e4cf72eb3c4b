import { Code, ConnectError, ErrorReason, type EventBus, type EventType, notFound, withReason } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { CallInfo } from "../executor/context.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import type { SessionManager } from "../sessions/manager.ts";
import type { RunFeed } from "./feed.ts";
import { RunLog } from "./run-log.ts";
import type { Page } from "../sessions/types.ts";
import {
  FINISHED_STATUSES,
  type Decision,
  type CancelMode,
  type RunFilter,
  type RunInput,
  type RunRecord,
  type RunSettings,
  type RunStore,
  type SequencedEvent,
} from "./types.ts";
import { executeRun, type ExecuteDeps, isSessionBusy, type LocalRun, type Resume } from "./execute-run.ts";
import { Launches } from "./launches.ts";
import { ParkedRuns } from "./parked.ts";
import { keepPartialTurn } from "./partial-turn.ts";
import { readJournal } from "./journal-read.ts";
import { watchRun } from "./watch.ts";
import { resumeFromJournal } from "./resume-state.ts";

/** How runs are kept and owned (config `runs`). */
interface RunPolicy {
  /** How long a replica owns a run without renewing; another takes it over after that. */
  leaseMs: number;
  /** How often the owner renews its leases and looks for cancels asked on other replicas. */
  renewEveryMs: number;
  /** How often a watcher on another replica polls the journal of a live run. */
  pollMs: number;
  /** Finished runs are deleted this long after they ended (absent: kept). */
  retentionHours?: number;
  /** An approval nobody decided this long after its run parked is refused (default a day). */
  approvalTimeoutSeconds?: number;
  /** A non-idempotent call a dead replica left unfinished: the model is told (default), or a person decides first. */
  unknownOutcome?: "model" | "approval";
}

/** What the manager is built from; wired in app.ts. */
export interface RunManagerDeps {
  store: RunStore;
  live: LiveRuntime;
  sessions: SessionManager;
  events: EventBus;
  log: Logger;
  policy: RunPolicy;
  /** This replica's name in the runs it owns. */
  replicaId?: string;
  /** The runs' live feed (Redis), when there is one: watchers on other replicas see text deltas too. Closed with the manager. */
  feed?: RunFeed;
  /** The journal is shared (PostgreSQL): at shutdown, runs still going are handed to another replica instead of interrupted. */
  handOver?: boolean;
  /** Server processes sharing the ports (server.workers): a journal in one's memory cannot serve runs across them. */
  workers?: number;
}

const DEFAULT_PAGE = 20;
const MAX_PAGE = 100;
// Runs one replica takes over per renewal: a replica that died with many runs is shared out among the others.
const ADOPT_AT_ONCE = 4;
// Pruning is one statement over finished runs: every ten minutes is plenty, whatever the renewal rate.
const PRUNE_EVERY_MS = 10 * 60_000;
// runs.approvalTimeoutSeconds' default: a day.
const DEFAULT_APPROVAL_TIMEOUT_S = 86_400;

/**
 * Durable runs on this replica: starts them (journaled before the first event
 * is acknowledged), runs them through the current generation's executor with
 * every step and tool call journaled as it happens, renews their leases, and
 * answers watches, cancels and reads for any run in the store.
 */
export class RunManager {
  readonly replicaId: string;
  private readonly local = new Map<string, LocalRun>();
  private readonly launches = new Launches();
  private readonly timer: ReturnType<typeof setInterval>;
  private closing = false;
  private prunedAt = Date.now();
  private warned = false;
  private readonly parked: ParkedRuns;
  private readonly executing: ExecuteDeps;

  constructor(private readonly deps: RunManagerDeps) {
    this.replicaId = deps.replicaId ?? `replica-${randomUUID()}`;
    const approvalTimeoutMs = (deps.policy.approvalTimeoutSeconds ?? DEFAULT_APPROVAL_TIMEOUT_S) * 1000;
    this.parked = new ParkedRuns({ store: deps.store, takeOver: (id) => this.takeOver(id), log: deps.log, approvalTimeoutMs });
    this.executing = {
      ...deps,
      parked: this.parked,
      publish: (type, run, data) => this.publish(type, run, data),
      lost: (id, err) => this.lost(id, err),
      waitFor: (ahead, signal) => this.waitFor(ahead, signal),
    };
    this.timer = setInterval(() => void this.renew(), deps.policy.renewEveryMs);
    this.timer.unref();
  }

  /**
   * Starts a run, or finds the one the same user's idempotency key started.
   * The run is in the store, with its `accepted` event, before this resolves.
   */
  async start(input: RunInput, settings: RunSettings, headers: CallInfo["header"], idempotencyKey: string): Promise<{ run: RunRecord; created: boolean }> {
    const { store, policy } = this.deps;
    if (!this.deps.handOver && (this.deps.workers ?? 1) > 1) {
      // A run started here would be unknown to the other workers its watcher, approver or canceller may reach.
      throw new ConnectError(
        `durable runs need a journal every worker shares: this server runs ${this.deps.workers} workers and keeps runs in memory; set runs.store: postgres`,
        Code.FailedPrecondition,
      );
    }
    if (!this.deps.handOver && !this.warned) {
      this.warned = true;
      this.deps.log.warn(
        "durable runs are kept in this process's memory (runs.store): they end with it; use a PostgreSQL journal (runs.store: postgres) for runs that survive a restart",
      );
    }
    let ahead = input.sessionId ? await this.busy(input.sessionId, settings) : [];
    const id = randomUUID();
    const first: SequencedEvent[] = [{ seq: 1, time: Date.now(), event: { type: "accepted" } }];
    const create = (queued: boolean) =>
      store.create(
        {
          id,
          userId: input.userId,
          agentId: input.agentId,
          sessionId: input.sessionId,
          idempotencyKey,
          status: queued ? "queued" : "running",
          input,
          settings,
          owner: this.replicaId,
          leaseMs: policy.leaseMs,
        },
        first,
      );
    let made;
    try {
      made = await create(ahead.length > 0);
    } catch (err) {
      // Another replica started a run on the session since it was checked: the database kept one;
      // this start is refused or queued, as its policy says.
      if (!isSessionBusy(err) || settings.onSessionBusy === "reject") throw err;
      ahead = await this.deps.store.active(input.sessionId);
      made = await create(true);
    }
    const { run, created } = made;
    if (!created) return { run, created };
    this.launch(run, new RunLog(id, this.replicaId, store, run.lastSeq, first, Date.now, this.deps.feed), headers, ahead);
    this.publish("RUN_STARTED", run, {});
    return { run, created };
  }

  /** The run, if it exists and `user` ("" for anyone: an admin) may see it. */
  async get(runId: string, user: string): Promise<RunRecord> {
    const run = await this.deps.store.get(runId);
    if (!run || (user && run.userId !== user)) throw withReason(notFound("run", runId), ErrorReason.RUN_NOT_FOUND, { run_id: runId });
    return run;
  }

  /** A page of runs, newest first. */
  list(filter: RunFilter, pageSize: number, pageToken: string): Promise<Page<RunRecord>> {
    const size = Math.min(Math.max(pageSize || DEFAULT_PAGE, 1), MAX_PAGE);
    return this.deps.store.list(filter, size, pageToken);
  }

  /** The run's events after `afterSeq`, then what comes, until it ends or `signal` fires. */
  watch(run: RunRecord, afterSeq: number, signal: AbortSignal): AsyncIterable<SequencedEvent> {
    return watchRun(run, afterSeq, signal, {
      store: this.deps.store,
      local: (id) => this.local.get(id)?.log,
      pollMs: this.deps.policy.pollMs,
      ...(this.deps.feed ? { feed: this.deps.feed } : {}),
      launched: (id, listener) => this.launches.listen(id, listener),
    });
  }

  /** Asks the run to stop (its owner acts on it, wherever it runs); the run as it is after. */
  async cancel(run: RunRecord, mode: CancelMode): Promise<RunRecord> {
    if (FINISHED_STATUSES.includes(run.status)) throw finished(run);
    const here = this.local.get(run.id);
    if (here) {
      this.stopLocal(here, mode);
      await here.done;
    } else if (run.status === "waiting" && (await this.deps.store.acquire(run.id, this.replicaId, this.deps.policy.leaseMs))) {
      // Parked, no owner: this replica ends it.
      const log = new RunLog(run.id, this.replicaId, this.deps.store, run.lastSeq, [], Date.now, this.deps.feed);
      if (mode === "interrupt") await keepPartialTurn(this.deps.store, this.deps.sessions, run, log);
      await log.push({ type: "cancelled", mode }, { status: "cancelled", release: true });
      this.publish("RUN_CANCELLED", run, { runId: run.id, mode });
    } else if (!(await this.deps.store.requestCancel(run.id, mode))) throw finished((await this.deps.store.get(run.id)) ?? run);
    return (await this.deps.store.get(run.id)) ?? run;
  }

  /**
   * At shutdown: runs going here get `graceMs` to finish; then, with a shared
   * journal, they are released for another replica to take over, otherwise
   * interrupted (what they did is kept); then renewing stops.
   */
  async close(graceMs = 0): Promise<void> {
    this.closing = true;
    const going = () => [...this.local.values()].map((r) => r.done);
    if (graceMs > 0 && this.local.size) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.allSettled(going()), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    for (const run of this.local.values()) {
      if (!this.deps.handOver) this.stopLocal(run, "interrupt");
      else {
        run.handedOver = true;
        run.controller.abort(new ConnectError("this replica is shutting down; another takes the run over", Code.Unavailable));
      }
    }
    await Promise.allSettled(going());
    clearInterval(this.timer);
    await this.deps.feed?.close();
  }

  /** The runs already going in `sessionId`, after applying the start's policy to them. */
  private async busy(sessionId: string, settings: RunSettings): Promise<RunRecord[]> {
    const active = await this.deps.store.active(sessionId);
    if (!active.length) return [];
    const policy = settings.onSessionBusy;
    if (policy === "reject") {
      const error = new ConnectError(`session "${sessionId}" already has a run going (${active[0]!.id}); on_session_busy says reject`, Code.FailedPrecondition);
      throw withReason(error, ErrorReason.SESSION_BUSY, { session_id: sessionId, run_id: active[0]!.id });
    }
    if (policy === "interrupt" || policy === "rollback") for (const run of active) await this.cancel(run, policy).catch(() => undefined);
    return active;
  }

  /**
   * Takes over runs whose replica stopped renewing their lease (it died, or lost
   * its store), at most a few at a time: each goes on here from its journal.
   */
  private async adoptOrphans(): Promise<void> {
    for (const orphan of await this.deps.store.orphans(ADOPT_AT_ONCE)) await this.takeOver(orphan.id, orphan.owner);
  }

  /** Takes one run over, when no live replica holds it, and goes on with it here from its journal. */
  private async takeOver(runId: string, from?: string): Promise<void> {
    const { store, policy } = this.deps;
    if (this.local.has(runId) || !(await store.acquire(runId, this.replicaId, policy.leaseMs))) return;
    const run = (await store.get(runId))!;
    const journal = await readJournal(store, run.id, 0);
    const resume = run.status === "queued" ? undefined : resumeFromJournal(journal, run.pending);
    if (resume && this.deps.policy.unknownOutcome) resume.state.unknownOutcome = this.deps.policy.unknownOutcome;
    this.deps.log.info({ run: run.id, from, steps: resume?.state.steps ?? 0, unfinishedTools: resume?.state.unfinished.length ?? 0 }, "run taken over");
    const ahead =
      run.status === "queued" && run.sessionId ? (await store.active(run.sessionId)).filter((r) => r.id !== run.id && r.createTime <= run.createTime) : [];
    // Its headers went with the replica that had them: the principal it started as stands in.
    // A dead owner's last text deltas took seqs its journal never got; the feed saw them: numbering goes on after them.
    const fed = this.deps.feed ? await this.deps.feed.lastSeq(run.id).catch(() => 0) : 0;
    this.launch(run, new RunLog(run.id, this.replicaId, store, Math.max(run.lastSeq, fed), [], Date.now, this.deps.feed), () => undefined, ahead, resume);
  }

  /** Runs `run` here: it counts as this replica's until it ends, and its log's watchers are told when it does. */
  private launch(run: RunRecord, log: RunLog, headers: CallInfo["header"], ahead: RunRecord[], resume?: Resume): void {
    const entry: LocalRun = { log, controller: new AbortController(), done: Promise.resolve() };
    this.local.set(run.id, entry);
    this.launches.launched(run.id, log);
    entry.done = executeRun(this.executing, run, entry, headers, ahead, resume).finally(() => {
      this.local.delete(run.id);
      log.end();
    });
  }

  /** Decides a call a parked run waits on; the run goes on here at once when that was the last one. */
  decide(run: RunRecord, toolCallId: string, decision: Decision): Promise<{ decided: boolean; run: RunRecord }> {
    return this.parked.decide(run, toolCallId, decision);
  }

  /** Answers calls of the caller's own tools; the run goes on here at once when none is left unanswered. Which ids were taken. */
  answer(run: RunRecord, results: readonly { toolCallId: string; output: string; isError: boolean }[]): Promise<{ accepted: string[]; run: RunRecord }> {
    return this.parked.answer(run, results);
  }

  /** Deletes finished runs past their retention, at most every PRUNE_EVERY_MS per replica. */
  private async prune(): Promise<void> {
    const hours = this.deps.policy.retentionHours;
    if (hours === undefined || Date.now() - this.prunedAt < PRUNE_EVERY_MS) return;
    this.prunedAt = Date.now();
    try {
      const deleted = await this.deps.store.prune(Date.now() - hours * 3_600_000);
      if (deleted) this.deps.log.info({ deleted, retentionHours: hours }, "finished runs pruned");
    } catch (err) {
      this.deps.log.warn({ err }, "could not prune finished runs");
    }
  }

  /** Waits until the runs ahead of this one in its session have finished. */
  private async waitFor(ahead: RunRecord[], signal: AbortSignal): Promise<void> {
    for (const run of ahead) {
      for (;;) {
        signal.throwIfAborted();
        const local = this.local.get(run.id);
        if (local) {
          await local.done;
          break;
        }
        const now = await this.deps.store.get(run.id);
        if (!now || FINISHED_STATUSES.includes(now.status)) break;
        await new Promise((r) => setTimeout(r, this.deps.policy.pollMs));
      }
    }
  }

  private stopLocal(run: LocalRun, mode: CancelMode): void {
    run.cancel ??= mode;
    run.controller.abort(new ConnectError(`the run was cancelled (${mode})`, Code.Canceled));
  }

  /** Renews this replica's leases, acts on cancels asked for elsewhere, and takes over orphaned runs. */
  private async renew(): Promise<void> {
    // A replica shutting down keeps its leases (its runs are still going) but takes on no more.
    // Expiry first: a run it leaves with nothing undecided is an orphan this same renewal adopts.
    if (!this.closing) await this.parked.expire().catch((err: unknown) => this.deps.log.warn({ err }, "could not refuse expired approvals"));
    if (!this.closing) await this.adoptOrphans().catch((err: unknown) => this.deps.log.warn({ err }, "could not look for orphaned runs"));
    if (!this.closing) await this.prune();
    const ids = [...this.local.keys()];
    if (!ids.length) return;
    try {
      const { lost, cancels } = await this.deps.store.renew(this.replicaId, ids, this.deps.policy.leaseMs);
      for (const id of lost) {
        const run = this.local.get(id);
        if (run) this.lost(id, new Error("lease lost"));
        run?.controller.abort(new ConnectError("this replica lost the run's lease", Code.Aborted));
      }
      for (const { runId, mode } of cancels) {
        const run = this.local.get(runId);
        if (run) this.stopLocal(run, mode);
      }
    } catch (err) {
      this.deps.log.warn({ err }, "could not renew run leases");
    }
  }

  private lost(runId: string, err: unknown): void {
    this.deps.log.warn({ err, run: runId }, "run no longer owned by this replica; it stops here");
  }

  private publish(type: EventType, run: RunRecord, data: Record<string, unknown>): void {
    const { events } = this.deps;
    if (!events.hasSubscribers(type)) return;
    events.publish({ type, agentId: run.agentId, sessionId: run.sessionId || undefined, userId: run.userId || undefined, data: { runId: run.id, ...data } });
  }
}

function finished(run: RunRecord): ConnectError {
  return withReason(new ConnectError(`run "${run.id}" has finished (${run.status})`, Code.FailedPrecondition), ErrorReason.RUN_FINISHED, {
    run_id: run.id,
    status: run.status,
  });
}
