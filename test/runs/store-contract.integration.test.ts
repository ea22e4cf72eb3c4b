// The RunStore contract (src/runs/types.ts), run against the memory store and
// against PostgreSQL (the run's real server, a fresh schema per test).
import { type AgentRunResult, Code, ErrorReason, reasonOf } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryRunStore } from "../../src/runs/memory-store.ts";
import { expiredDecision } from "../../src/runs/parked.ts";
import type { PendingCall, RunRecord, RunStore } from "../../src/runs/types.ts";
import { rejection } from "../support/rejection.ts";
import { databaseUrl } from "../support/services.ts";
import { accepted, newRun, OWNER, Schemas, seq, sleep } from "./run-fixtures.ts";

let pool: pg.Pool;
let schemas: Schemas;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 });
  schemas = new Schemas(pool);
});

afterAll(async () => {
  await schemas.dropAll();
  await pool.end();
});

const stores: [string, () => Promise<RunStore>][] = [
  ["memory", async () => new MemoryRunStore()],
  ["postgres", () => schemas.store()],
];

// Well past any wait below: a lease that must not end during a test.
const LONG = 60_000;
// A lease that has ended once WAIT has passed.
const SHORT = 1;
const WAIT = 20;

const result: AgentRunResult = {
  success: true,
  output: "5",
  model: "echo",
  finishReason: "stop",
  usage: { inputTokens: 12, outputTokens: 3 },
  durationMs: 40,
  metadata: { k: "v" },
  steps: 2,
  toolCalls: [{ id: "call_1", name: "add", arguments: '{"a":2,"b":3}', step: 1, outcome: "ok", output: "5", durationMs: 4, idempotent: true }],
};

describe.each(stores)("%s: the RunStore contract", (_name, make) => {
  const withStore = (fn: (store: RunStore) => Promise<void>) => async () => {
    const store = await make();
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  };

  it(
    "creates a run with its first events and reads it back as it was given",
    withStore(async (store) => {
      const run = newRun();
      const first = seq(1, [{ type: "accepted" }, { type: "started", model: "echo", agentId: "helper" }]);
      const { run: made, created } = await store.create(run, first);
      expect(created).toBe(true);
      const { leaseMs, ...given } = run;
      expect(made).toMatchObject({ ...given, lastSeq: 2, pending: [], leaseUntil: expect.any(Number) });
      expect(made.leaseUntil! - made.createTime).toBe(leaseMs);
      expect(made.updateTime).toBe(made.createTime);
      expect(made).not.toHaveProperty("result");
      expect(await store.get(run.id)).toEqual(made);
      expect(await store.events(run.id, 0, 10)).toEqual(first);
      expect(await store.get(randomUUID())).toBeUndefined();
    }),
  );

  it(
    "creates once per user and idempotency key; another user's key or an empty key never dedupes",
    withStore(async (store) => {
      const first = newRun({ idempotencyKey: "k1" });
      const one = await store.create(first, accepted());
      const again = await store.create(
        newRun({ userId: first.userId, idempotencyKey: "k1" }),
        seq(1, [{ type: "accepted" }, { type: "step_started", step: 1 }]),
      );
      expect(again).toEqual({ run: one.run, created: false });
      // Nothing of the retry was written.
      expect(await store.events(first.id, 0, 10)).toEqual(accepted());
      const other = await store.create(newRun({ idempotencyKey: "k1" }), accepted());
      expect(other.created).toBe(true);
      expect(other.run.id).not.toBe(first.id);
      const noKey = newRun({ userId: first.userId });
      const a = await store.create(noKey, accepted());
      // In its own session: a session keeps one running run.
      const b = await store.create({ ...noKey, id: randomUUID(), sessionId: randomUUID() }, accepted());
      expect([a.created, b.created]).toEqual([true, true]);
      expect(b.run.id).not.toBe(a.run.id);
    }),
  );

  it(
    "appends for the owner: events in seq order, lastSeq past the deltas, which are not journaled, and the update",
    withStore(async (store) => {
      const run = newRun();
      await store.create(run, accepted());
      const events = seq(2, [
        { type: "step_started", step: 1 },
        { type: "delta", text: "thinking" },
        { type: "tool_call_started", step: 1, toolCallId: "call_1", name: "add", index: 0 },
        { type: "tool_call_delta", step: 1, toolCallId: "call_1", argumentsDelta: '{"a":2' },
        { type: "tool_call", step: 1, call: { id: "call_1", name: "add", arguments: '{"a":2,"b":3}' } },
      ]);
      await store.append(run.id, OWNER, 6, events);
      const pending = [{ step: 1, call: { id: "call_1", name: "add", arguments: "{}" }, reason: "approval" as const, expireAt: 1_800_000_000_000 }];
      await store.append(
        run.id,
        OWNER,
        8,
        seq(7, [
          { type: "delta", text: "more" },
          { type: "delta", text: "still" },
        ]),
        { status: "waiting", pending },
      );
      const journal = await store.events(run.id, 0, 100);
      expect(journal.map((e) => e.seq)).toEqual([1, 2, 4, 6]);
      expect(journal.slice(1)).toEqual([events[0], events[2], events[4]]);
      const got = (await store.get(run.id))!;
      expect(got).toMatchObject({ lastSeq: 8, status: "waiting", pending, owner: OWNER });
      expect(got.updateTime).toBeGreaterThanOrEqual(got.createTime);
      // lastSeq never goes back.
      await store.append(run.id, OWNER, 3, []);
      expect((await store.get(run.id))!.lastSeq).toBe(8);
    }),
  );

  it(
    "refuses an append by a replica that does not own the run with ABORTED RUN_NOT_OWNED, and writes nothing",
    withStore(async (store) => {
      const run = newRun();
      await store.create(run, accepted());
      const before = await store.get(run.id);
      const err = await rejection(store.append(run.id, "replica-b", 2, seq(2, [{ type: "step_started", step: 1 }]), { status: "failed" }));
      expect(err.code).toBe(Code.Aborted);
      expect(reasonOf(err)).toEqual({ reason: ErrorReason.RUN_NOT_OWNED, metadata: { run_id: run.id } });
      expect(await store.get(run.id)).toEqual(before);
      expect(await store.events(run.id, 0, 10)).toEqual(accepted());
      const unknown = randomUUID();
      expect(reasonOf(await rejection(store.append(unknown, OWNER, 1, []))).reason).toBe(ErrorReason.RUN_NOT_OWNED);
    }),
  );

  it(
    "release clears owner and lease, and the former owner's next append is refused",
    withStore(async (store) => {
      const run = newRun();
      await store.create(run, accepted());
      await store.append(run.id, OWNER, 2, seq(2, [{ type: "completed", result }]), { status: "completed", result, release: true });
      const done = (await store.get(run.id))!;
      expect(done).toMatchObject({ status: "completed", result, lastSeq: 2 });
      expect(done).not.toHaveProperty("owner");
      expect(done).not.toHaveProperty("leaseUntil");
      const failed = { code: Code.Internal, message: "late", reason: "INTERNAL" };
      expect((await rejection(store.append(run.id, OWNER, 3, [], { error: failed }))).code).toBe(Code.Aborted);
      expect(await store.get(run.id)).toEqual(done);
    }),
  );

  it(
    "pages the journal by afterSeq and limit",
    withStore(async (store) => {
      const run = newRun();
      await store.create(run, accepted());
      const steps = seq(
        2,
        Array.from({ length: 9 }, (_, i) => ({ type: "step_started" as const, step: i + 1 })),
      );
      await store.append(run.id, OWNER, 10, steps);
      const seqs = async (after: number, limit: number) => (await store.events(run.id, after, limit)).map((e) => e.seq);
      expect(await seqs(0, 4)).toEqual([1, 2, 3, 4]);
      expect(await seqs(4, 4)).toEqual([5, 6, 7, 8]);
      expect(await seqs(8, 4)).toEqual([9, 10]);
      expect(await seqs(10, 4)).toEqual([]);
      expect(await seqs(3, 0)).toEqual([]);
      expect(await store.events(randomUUID(), 0, 10)).toEqual([]);
    }),
  );

  it(
    "lists a session's queued, running and waiting runs, oldest first",
    withStore(async (store) => {
      const sessionId = randomUUID();
      const ids: string[] = [];
      // One running (a session keeps one running or waiting run), two queued behind it.
      for (const status of ["running", "completed", "queued", "queued", "cancelled"] as const) {
        const run = newRun({ sessionId, status });
        await store.create(run, accepted());
        ids.push(run.id);
        // Creation times a millisecond apart, so "oldest first" is one order in every store.
        await sleep(3);
      }
      await store.create(newRun(), accepted());
      expect((await store.active(sessionId)).map((r) => r.id)).toEqual([ids[0], ids[2], ids[3]]);
      expect(await store.active(randomUUID())).toEqual([]);
      const parked = newRun({ status: "waiting" });
      await store.create(parked, accepted());
      expect((await store.active(parked.sessionId)).map((r) => r.id)).toEqual([parked.id]);
    }),
  );

  it(
    "acquires a run that is unowned or whose lease ended, never one another holds or that finished",
    withStore(async (store) => {
      const free = newRun({ owner: undefined, leaseMs: undefined });
      await store.create(free, accepted());
      expect(await store.acquire(free.id, "replica-b", LONG)).toBe(true);
      expect(await store.acquire(free.id, "replica-c", LONG)).toBe(false);
      // Its holder may take it again.
      expect(await store.acquire(free.id, "replica-b", SHORT)).toBe(true);
      await sleep(WAIT);
      expect(await store.acquire(free.id, "replica-c", LONG)).toBe(true);
      expect(await store.get(free.id)).toMatchObject({ owner: "replica-c" });
      // The former holder is refused now.
      expect((await rejection(store.append(free.id, "replica-b", 2, []))).code).toBe(Code.Aborted);

      const finished = newRun({ status: "completed", owner: undefined, leaseMs: undefined });
      await store.create(finished, accepted());
      expect(await store.acquire(finished.id, "replica-b", LONG)).toBe(false);
      expect(await store.acquire(randomUUID(), "replica-b", LONG)).toBe(false);
      const parked = newRun({ status: "waiting", owner: undefined, leaseMs: undefined });
      await store.create(parked, accepted());
      expect(await store.acquire(parked.id, "replica-b", LONG)).toBe(true);
    }),
  );

  it(
    "renews the leases the owner holds, returning the ids it no longer holds and the cancels asked for of the others",
    withStore(async (store) => {
      const [kept, lost] = [newRun({ owner: undefined, leaseMs: undefined }), newRun({ owner: undefined, leaseMs: undefined })];
      for (const r of [kept, lost]) {
        await store.create(r, accepted());
        expect(await store.acquire(r.id, "replica-b", SHORT)).toBe(true);
      }
      await sleep(WAIT);
      expect(await store.acquire(lost.id, "replica-c", LONG)).toBe(true);
      const unknown = randomUUID();
      expect(await store.renew("replica-b", [kept.id, lost.id, unknown], LONG)).toEqual({ lost: [lost.id, unknown], cancels: [] });
      // The renewed lease outlasts the short one it replaced.
      await sleep(WAIT);
      expect(await store.acquire(kept.id, "replica-c", LONG)).toBe(false);
      expect(await store.renew("replica-b", [], LONG)).toEqual({ lost: [], cancels: [] });
      // A cancel asked for on another replica reaches the owner with its next renewal; not one of a run it lost.
      expect(await store.requestCancel(kept.id, "rollback")).toBe(true);
      expect(await store.requestCancel(lost.id, "interrupt")).toBe(true);
      expect(await store.renew("replica-b", [kept.id, lost.id], LONG)).toEqual({ lost: [lost.id], cancels: [{ runId: kept.id, mode: "rollback" }] });
    }),
  );

  it(
    "finds running and queued runs whose lease ended, oldest first, at most limit",
    withStore(async (store) => {
      const make = async (overrides: Parameters<typeof newRun>[0], leaseMs: number) => {
        const run = newRun({ owner: undefined, leaseMs: undefined, ...overrides });
        await store.create(run, accepted());
        if (leaseMs > 0) await store.acquire(run.id, "replica-dead", leaseMs);
        await sleep(3);
        return run.id;
      };
      const dead = await make({}, SHORT);
      const queued = await make({ status: "queued" }, 0);
      await make({}, LONG); // its replica lives
      await make({ status: "waiting" }, SHORT); // parked: waits for no process
      await make({ status: "failed" }, 0);
      const deadToo = await make({}, SHORT);
      await sleep(WAIT);
      expect((await store.orphans(10)).map((r) => r.id)).toEqual([dead, queued, deadToo]);
      expect((await store.orphans(2)).map((r) => r.id)).toEqual([dead, queued]);
    }),
  );

  it(
    "records the first cancel asked for, and refuses one for a finished or unknown run",
    withStore(async (store) => {
      const run = newRun();
      await store.create(run, accepted());
      expect(await store.requestCancel(run.id, "rollback")).toBe(true);
      expect(await store.requestCancel(run.id, "interrupt")).toBe(true);
      expect((await store.get(run.id))!.cancelRequested).toBe("rollback");
      const done = newRun({ status: "cancelled" });
      await store.create(done, accepted());
      expect(await store.requestCancel(done.id, "interrupt")).toBe(false);
      expect(await store.get(done.id)).not.toHaveProperty("cancelRequested");
      expect(await store.requestCancel(randomUUID(), "interrupt")).toBe(false);
    }),
  );

  it(
    "prunes finished runs last updated before the time, with their journals, and frees their keys",
    withStore(async (store) => {
      const finish = async (r: RunRecord | ReturnType<typeof newRun>) => {
        await store.append(r.id, OWNER, 2, seq(2, [{ type: "completed", result }]), { status: "completed", result, release: true });
        return (await store.get(r.id))!;
      };
      const [old, running, recent] = [newRun({ idempotencyKey: "old" }), newRun(), newRun()];
      for (const r of [old, running, recent]) await store.create(r, accepted());
      const oldDone = await finish(old);
      await sleep(WAIT);
      const recentDone = await finish(recent);
      expect(recentDone.updateTime).toBeGreaterThan(oldDone.updateTime + 1);
      expect(await store.prune(oldDone.updateTime + 1)).toBe(1);
      expect(await store.get(old.id)).toBeUndefined();
      expect(await store.events(old.id, 0, 10)).toEqual([]);
      expect(await store.get(running.id)).toBeDefined();
      expect(await store.get(recent.id)).toEqual(recentDone);
      const retried = await store.create(newRun({ userId: old.userId, idempotencyKey: "old" }), accepted());
      expect(retried.created).toBe(true);
      expect(await store.prune(oldDone.updateTime + 1)).toBe(0);
    }),
  );

  it(
    "lists by user, session and status, newest first, page by page",
    withStore(async (store) => {
      const user = newRun().userId;
      const sessionId = randomUUID();
      const made: RunRecord[] = [];
      // The first four share a session, which keeps one running or waiting run.
      const statuses = ["running", "queued", "completed", "failed", "waiting", "waiting", "queued"] as const;
      for (const [i, status] of statuses.entries()) {
        made.push((await store.create(newRun({ userId: user, sessionId: i < 4 ? sessionId : randomUUID(), status }), accepted())).run);
      }
      await store.create(newRun({ sessionId, status: "completed" }), accepted()); // another user's run in the session
      const newestFirst = (rs: RunRecord[]) => [...rs].sort((a, b) => b.createTime - a.createTime || (a.id < b.id ? 1 : -1)).map((r) => r.id);
      const walk = async (filter: Parameters<RunStore["list"]>[0], size: number) => {
        const ids: string[] = [];
        let token = "";
        do {
          const page = await store.list(filter, size, token);
          expect(page.items.length).toBeLessThanOrEqual(size);
          ids.push(...page.items.map((r) => r.id));
          token = page.nextPageToken;
        } while (token !== "");
        return ids;
      };
      expect(await walk({ userId: user }, 3)).toEqual(newestFirst(made));
      expect(await walk({ userId: user, statuses: ["waiting"] }, 2)).toEqual(newestFirst(made.filter((r) => r.status === "waiting")));
      expect(await walk({ userId: user, sessionId, statuses: [] }, 10)).toEqual(newestFirst(made.slice(0, 4)));
      expect(await walk({ sessionId }, 10)).toHaveLength(5);
      const whole = await store.list({ userId: user }, 10, "");
      expect(whole.nextPageToken).toBe("");
      expect(whole.items[0]).toEqual(await store.get(whole.items[0]!.id));
      // Called from an async function, as every caller does: MemoryRunStore.list throws this synchronously.
      const forged = await rejection((async () => store.list({ userId: user }, 2, "bm90IGEgdG9rZW4"))());
      expect(forged.code).toBe(Code.InvalidArgument);
    }),
  );

  it(
    "reads back text with NUL, emoji and a lone surrogate, and a result with tool calls, exactly",
    withStore(async (store) => {
      const odd = "nul\u0000 emoji \u{1F600} lone \uD800 end \uDC00";
      const run = newRun();
      run.input.task = odd;
      run.input.metadata = { [odd]: odd };
      await store.create(run, accepted());
      const oddResult: AgentRunResult = {
        ...result,
        output: odd,
        toolCalls: [{ ...result.toolCalls![0]!, arguments: JSON.stringify({ text: odd }), output: odd }],
        structuredOutput: { text: odd, list: [1, null, true, 2.5] },
      };
      const events = seq(2, [
        { type: "tool_call", step: 1, call: { id: "call_1", name: "echo", arguments: JSON.stringify({ text: odd }) } },
        { type: "tool_result", step: 1, record: oddResult.toolCalls![0]! },
        { type: "completed", result: oddResult },
      ]);
      await store.append(run.id, OWNER, 4, events, { status: "completed", result: oddResult, error: { code: 13, message: odd, reason: "INTERNAL" } });
      expect((await store.events(run.id, 1, 10)).map((e) => e.event)).toEqual(events.map((e) => e.event));
      expect(await store.events(run.id, 1, 10)).toEqual(events);
      const got = (await store.get(run.id))!;
      expect(got.result).toEqual(oddResult);
      expect(got.result!.output).toBe(odd);
      expect(got.input.task).toBe(odd);
      expect(got.input.metadata).toEqual({ [odd]: odd });
      expect(got.error!.message).toBe(odd);
    }),
  );

  it(
    "decides a waiting run's calls once each; the last decision makes it running with no owner, for any replica to take",
    withStore(async (store) => {
      const run = newRun();
      await store.create(run, accepted());
      const calls = ["a", "b"].map((id) => ({ step: 1, call: { id, name: "refund", arguments: "{}" }, reason: "approval" as const }));
      await store.append(
        run.id,
        OWNER,
        2,
        seq(2, [
          { type: "waiting", step: 1, calls: calls.map((c) => c.call), pending: calls.map((c) => ({ toolCallId: c.call.id, reason: "approval" as const })) },
        ]),
        {
          status: "waiting",
          pending: calls,
          release: true,
        },
      );
      expect(await store.decide(run.id, "zzz", { approved: true })).toBe("absent");
      expect(await store.decide(run.id, "a", { approved: true, arguments: '{"amount":1}' })).toBe("decided");
      expect(await store.decide(run.id, "a", { approved: false })).toBe("already");
      expect((await store.get(run.id))!.status).toBe("waiting");
      expect(await store.decide(run.id, "b", { approved: false, message: "no" })).toBe("decided");
      const after = (await store.get(run.id))!;
      expect(after.status).toBe("running");
      expect(after.owner).toBeUndefined();
      expect(after.pending.map((p) => p.decision)).toEqual([
        { approved: true, arguments: '{"amount":1}' },
        { approved: false, message: "no" },
      ]);
      // Once it has gone on, a repeat is still "already", never an error; the run is there for an orphan sweep.
      expect(await store.decide(run.id, "b", { approved: true })).toBe("already");
      expect((await store.orphans(100)).map((r) => r.id)).toContain(run.id);
    }),
  );

  /** A run parked (waiting, released) on `pending`. */
  const parked = async (store: RunStore, pending: PendingCall[]) => {
    const run = newRun();
    await store.create(run, accepted());
    const waiting = pending.map((p) => ({ toolCallId: p.call.id, reason: p.reason }));
    await store.append(run.id, OWNER, 2, seq(2, [{ type: "waiting", step: 1, calls: pending.map((p) => p.call), pending: waiting }]), {
      status: "waiting",
      pending,
      release: true,
    });
    return run.id;
  };
  const call = (id: string, reason: PendingCall["reason"], more: Partial<PendingCall> = {}): PendingCall => ({
    step: 1,
    call: { id, name: "refund", arguments: "{}" },
    reason,
    ...more,
  });
  // Epoch ms of the expiries below; every `now` is given, so no test waits for a clock.
  const T = 1_900_000_000_000;

  it(
    "refuses approvals nobody decided by their expiry, once; a run with nothing left undecided becomes running with no owner",
    withStore(async (store) => {
      const alone = await parked(store, [call("a", "approval", { expireAt: T })]);
      const withCaller = await parked(store, [call("a", "approval", { expireAt: T, note: 'middleware "limits": over 100' }), call("c", "caller")]);
      const later = await parked(store, [call("a", "approval", { expireAt: T }), call("b", "approval", { expireAt: T + 60_000 })]);
      const never = await parked(store, [call("a", "approval")]);
      // Decided in time: the decision stands.
      expect(await store.decide(later, "a", { approved: true }, T - 1)).toBe("decided");
      expect(await store.expireApprovals(T - 1, 10)).toEqual([]);
      const first = await store.expireApprovals(T, 1);
      expect(first).toHaveLength(1);
      expect([...first, ...(await store.expireApprovals(T, 10))].sort()).toEqual([alone, withCaller].sort());
      expect(await store.expireApprovals(T, 10)).toEqual([]);

      const ran = (await store.get(alone))!;
      expect(ran.status).toBe("running");
      expect(ran.owner).toBeUndefined();
      expect(ran.pending[0]!.decision).toEqual(expiredDecision(T));
      expect(ran.pending[0]!.decision!.message).toMatch(/^the approval expired: nobody decided by /);
      expect((await store.orphans(100)).map((r) => r.id)).toContain(alone);
      // A late decision finds the call decided: the refusal by expiry stands.
      expect(await store.decide(alone, "a", { approved: true }, T + 5)).toBe("already");
      expect((await store.get(alone))!.pending[0]!.decision).toEqual(expiredDecision(T));

      const half = (await store.get(withCaller))!;
      expect(half.status).toBe("waiting");
      expect(half.pending).toEqual([
        call("a", "approval", { expireAt: T, note: 'middleware "limits": over 100', decision: expiredDecision(T) }),
        call("c", "caller"),
      ]);
      expect(await store.decide(withCaller, "c", { approved: true, result: { output: "ok", isError: false } }, T + 5)).toBe("decided");
      expect((await store.get(withCaller))!.status).toBe("running");

      expect((await store.get(later))!.status).toBe("waiting");
      expect(await store.expireApprovals(T + 60_000, 10)).toEqual([later]);
      const both = (await store.get(later))!;
      expect(both.status).toBe("running");
      expect(both.pending.map((p) => p.decision)).toEqual([{ approved: true }, expiredDecision(T + 60_000)]);

      expect(await store.expireApprovals(T + 1e9, 10)).toEqual([]);
      expect((await store.get(never))!).toMatchObject({ status: "waiting", pending: [call("a", "approval")] });
    }),
  );

  it(
    "a decision after the approval expired finds it decided (refused) even before any sweep, and others of the run may still be decided",
    withStore(async (store) => {
      const id = await parked(store, [call("a", "approval", { expireAt: T }), call("b", "approval", { expireAt: T + 60_000 })]);
      expect(await store.decide(id, "a", { approved: true }, T)).toBe("already");
      const now = (await store.get(id))!;
      expect(now.status).toBe("waiting");
      expect(now.pending[0]!.decision).toEqual(expiredDecision(T));
      expect(await store.decide(id, "b", { approved: true }, T)).toBe("decided");
      const after = (await store.get(id))!;
      expect(after).toMatchObject({ status: "running" });
      expect(after.pending.map((p) => p.decision)).toEqual([expiredDecision(T), { approved: true }]);
      expect(await store.expireApprovals(T + 1e9, 10)).toEqual([]);
    }),
  );

  it(
    "keeps one running or waiting run per session: a second is refused SESSION_BUSY, a queued one may not start until the first ends",
    withStore(async (store) => {
      const first = newRun();
      await store.create(first, accepted());
      const second = newRun({ sessionId: first.sessionId, userId: first.userId });
      const refused = await store.create(second, accepted()).catch((err: unknown) => err);
      expect(reasonOf(refused).reason).toBe("SESSION_BUSY");
      expect(reasonOf(refused).metadata).toMatchObject({ session_id: first.sessionId, run_id: first.id });
      const queued = newRun({ sessionId: first.sessionId, userId: first.userId, status: "queued" });
      await store.create(queued, accepted());
      const early = await store.append(queued.id, OWNER, 1, [], { status: "running" }).catch((err: unknown) => err);
      expect(reasonOf(early).reason).toBe("SESSION_BUSY");
      await store.append(first.id, OWNER, 1, [], { status: "completed", release: true });
      await store.append(queued.id, OWNER, 1, [], { status: "running" });
      expect((await store.get(queued.id))!.status).toBe("running");
      // Runs without a session never meet.
      await store.create(newRun({ sessionId: "" }), accepted());
      await store.create(newRun({ sessionId: "" }), accepted());
    }),
  );
});
