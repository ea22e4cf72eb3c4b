import { invalidArgument } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { RunResponseSchema, type RunEvent, type RunRequest, type RunResponse } from "../gen/qingyu/agent/v1/run_pb.ts";
import type { RunManager } from "../runs/run-manager.ts";
import type { RunRecord, RunSettings } from "../runs/types.ts";
import type { CallContext } from "../transport/types.ts";
import { ids } from "./ids.ts";
import { parseApproval, parseResults, parseStart, type RunActions } from "./run-actions.ts";
import { toRunEvent } from "./run-convert.ts";
import type { Admitted } from "./scope.ts";

const LAST = new Set(["completed", "failed", "cancelled"]);

/**
 * A run's events after `afterSeq` as the wire's RunEvents, until it ends or
 * `signal` fires. With the settings of the start that made it: a background
 * run answers with `accepted` only, and a caller that goes away from a run it
 * asked to be cancelled on disconnect cancels it, keeping what it did.
 */
export async function* followRun(
  runs: RunManager,
  run: RunRecord,
  afterSeq: number,
  signal: AbortSignal,
  started?: RunSettings,
  /** Fires when the caller went away (by default, `signal`). */
  disconnected: AbortSignal = signal,
): AsyncGenerator<RunEvent> {
  if (started?.background) {
    yield toRunEvent({ seq: 1, time: run.createTime, event: { type: "accepted" } }, run);
    return;
  }
  let ended = false;
  try {
    for await (const e of runs.watch(run, afterSeq, signal)) {
      yield toRunEvent(e, run);
      ended ||= LAST.has(e.event.type);
    }
  } finally {
    if (!ended && disconnected.aborted && started?.onDisconnect === "cancel") await runs.cancel(run, "interrupt").catch(() => undefined);
  }
}

/**
 * The bidirectional Run: the first request starts or attaches to a run; the
 * stream then carries its events, and the answers to the caller's tool
 * results, approvals and cancel, in the order they happen, until the run ends.
 * A request refused ends the stream with its status; the run goes on.
 */
export function runStream(actions: RunActions, runs: RunManager, admit: (call: CallContext, userId: string) => Promise<Admitted>) {
  return async function* run(requests: AsyncIterable<RunRequest>, call: CallContext): AsyncGenerator<RunResponse> {
    const incoming = requests[Symbol.asyncIterator]();
    const first = await incoming.next();
    const action = first.done ? undefined : first.value.action;
    let run: RunRecord;
    let afterSeq = 0;
    let started: RunSettings | undefined;
    let a: Admitted;
    if (action?.case === "start") {
      const start = parseStart(action.value);
      a = await admit(call, start.input.userId);
      run = await actions.start(a, start, (name) => call.header(name));
      started = start.settings;
    } else if (action?.case === "attach") {
      const runId = ids.run(action.value.runId, "attach.run_id");
      a = await admit(call, ids.user(action.value.userId, "attach.user_id"));
      run = await actions.get(a, runId);
      afterSeq = Number(action.value.afterSeq);
    } else {
      await incoming.return?.();
      throw invalidArgument("action", `must be start or attach in the first message${action?.case ? `, not ${action.case}` : ""}`);
    }

    const out = new Outbox<RunResponse>();
    const stop = new AbortController();
    const onAbort = () => stop.abort(call.signal.reason);
    call.signal.addEventListener("abort", onAbort, { once: true });
    // The caller's requests are answered as they come, between the run's events.
    void (async () => {
      for (;;) {
        const next = await incoming.next();
        if (next.done || stop.signal.aborted) return;
        out.push(await answer(actions, a, run.id, next.value));
      }
    })().catch((err: unknown) => out.fail(err));
    void (async () => {
      for await (const event of followRun(runs, run, afterSeq, stop.signal, started, call.signal))
        out.push(create(RunResponseSchema, { message: { case: "event", value: event } }));
      out.close();
    })().catch((err: unknown) => out.fail(err));
    try {
      yield* out.drain(stop.signal);
    } finally {
      stop.abort();
      call.signal.removeEventListener("abort", onAbort);
      // Not awaited: a request stream's return() may wait behind the read still pending on it.
      void incoming.return?.()?.catch(() => undefined);
    }
  };
}

/** One later request of a Run stream, answered; it acts on the stream's run only. */
async function answer(actions: RunActions, a: Admitted, runId: string, req: RunRequest): Promise<RunResponse> {
  const action = req.action;
  const own = (given: string, field: string) => {
    const id = ids.run(given, field);
    if (id && id !== runId) throw invalidArgument(field, `names run "${id}", not this stream's run "${runId}"`);
    return runId;
  };
  switch (action.case) {
    case "toolResults":
      return create(RunResponseSchema, {
        message: { case: "toolResults", value: await actions.answer(a, parseResults(action.value, own(action.value.runId, "tool_results.run_id"))) },
      });
    case "approval":
      return create(RunResponseSchema, {
        message: { case: "approval", value: await actions.approve(a, parseApproval(action.value, own(action.value.runId, "approval.run_id"))) },
      });
    case "cancel":
      return create(RunResponseSchema, {
        message: { case: "cancel", value: await actions.cancel(a, action.value, own(action.value.runId, "cancel.run_id")) },
      });
    default:
      throw invalidArgument(
        "action",
        `${action.case ? `"${action.case}" comes only first` : "is required"}: later messages answer tool calls, approve or cancel`,
      );
  }
}

/** What two producers hand one consumer, in the order they hand it: closed by one, failed by either. */
class Outbox<T> {
  private readonly queue: T[] = [];
  private done = false;
  private error: unknown;
  private failed = false;
  private wake: (() => void) | undefined;

  push(item: T): void {
    if (this.done) return;
    this.queue.push(item);
    this.notify();
  }

  close(): void {
    this.done = true;
    this.notify();
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.failed = true;
    this.error = err;
    this.done = true;
    this.notify();
  }

  async *drain(signal: AbortSignal): AsyncGenerator<T> {
    const onAbort = () => this.notify();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        // A failure is answered at once: what was queued behind it would be answered on a stream that is ending.
        if (this.failed) throw this.error;
        const item = this.queue.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (this.done || signal.aborted) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
