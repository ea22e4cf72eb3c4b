import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "@qingyu/plugin-api";
import {
  CancelMode as ProtoCancelMode,
  OnDisconnect,
  RunEventSchema,
  RunSchema,
  RunStatus as ProtoStatus,
  SessionBusy,
  type Run,
  type RunEvent,
  type RunOptions,
} from "../gen/qingyu/agent/v1/run_pb.ts";
import type { CancelMode, PendingCall, RunRecord, RunSettings, RunStatus, SequencedEvent } from "../runs/types.ts";
import type { ToolSpec } from "@qingyu/plugin-api";
import type { ToolSpec as ProtoToolSpec } from "../gen/qingyu/agent/v1/tool_pb.ts";
import { isToolName } from "../tools/tool-name.ts";
import { toAgentResult } from "./convert.ts";
import { toStreamResponse } from "./run-events.ts";

const STATUS: Record<RunStatus, ProtoStatus> = {
  queued: ProtoStatus.QUEUED,
  running: ProtoStatus.RUNNING,
  waiting: ProtoStatus.WAITING,
  completed: ProtoStatus.COMPLETED,
  failed: ProtoStatus.FAILED,
  cancelled: ProtoStatus.CANCELLED,
};

/** A status of a request (ListRuns), or INVALID_ARGUMENT. */
export function fromProtoStatus(s: ProtoStatus, field: string): RunStatus {
  const found = (Object.entries(STATUS) as [RunStatus, ProtoStatus][]).find(([, p]) => p === s);
  if (!found) throw invalidArgument(field, `contains an unknown run status ${s}`);
  return found[0];
}

/** A cancel mode of a request: interrupt unless rollback. */
export function fromProtoCancel(mode: ProtoCancelMode): CancelMode {
  return mode === ProtoCancelMode.ROLLBACK ? "rollback" : "interrupt";
}

// A caller declares its tools per run: bounded like any request field.
const MAX_CALLER_TOOLS = 32;
const MAX_SCHEMA_CHARS = 64 * 1024;

function callerTool(t: ProtoToolSpec, field: string): ToolSpec {
  if (!isToolName(t.name)) throw invalidArgument(`${field}.name`, "must be [A-Za-z0-9_-], 1 to 64 characters");
  if (t.description.length > MAX_SCHEMA_CHARS) throw invalidArgument(`${field}.description`, `is longer than ${MAX_SCHEMA_CHARS} characters`);
  const inputSchema = t.inputSchema ?? { type: "object" };
  if (JSON.stringify(inputSchema).length > MAX_SCHEMA_CHARS) throw invalidArgument(`${field}.input_schema`, `is larger than ${MAX_SCHEMA_CHARS} characters`);
  return { name: t.name, description: t.description, inputSchema };
}

/** StartRun's options as the manager takes them. */
export function toRunSettings(o: RunOptions | undefined): RunSettings {
  const busy = o?.onSessionBusy ?? SessionBusy.UNSPECIFIED;
  if ((o?.callerTools.length ?? 0) > MAX_CALLER_TOOLS)
    throw invalidArgument("options.caller_tools", `has ${o!.callerTools.length} tools; at most ${MAX_CALLER_TOOLS}`);
  return {
    background: o?.background ?? false,
    onDisconnect: o?.onDisconnect === OnDisconnect.CANCEL ? "cancel" : "continue",
    onSessionBusy:
      busy === SessionBusy.ENQUEUE ? "enqueue" : busy === SessionBusy.INTERRUPT ? "interrupt" : busy === SessionBusy.ROLLBACK ? "rollback" : "reject",
    callerTools: (o?.callerTools ?? []).map((t, i) => callerTool(t, `options.caller_tools[${i}]`)),
  };
}

/** A run record as the wire's Run. */
export function toRun(r: RunRecord): Run {
  return create(RunSchema, {
    runId: r.id,
    agentId: r.agentId,
    sessionId: r.sessionId,
    userId: r.userId,
    status: STATUS[r.status],
    createTime: timestampFromMs(r.createTime),
    updateTime: timestampFromMs(r.updateTime),
    lastSeq: BigInt(r.lastSeq),
    idempotencyKey: r.idempotencyKey,
    result: r.result ? toAgentResult(r.result) : undefined,
    error: r.error,
    pending: r.pending.map(toPending),
    task: r.input.task,
  });
}

function toPending(p: PendingCall) {
  return {
    step: p.step,
    call: { toolCallId: p.call.id, name: p.call.name, arguments: p.call.arguments },
    reason: p.reason,
    note: p.note ?? "",
    expireTime: p.expireAt === undefined ? undefined : timestampFromMs(p.expireAt),
  };
}

/** One sequenced event of a run as the wire's RunEvent. */
export function toRunEvent(e: SequencedEvent, run: RunRecord): RunEvent {
  const base = { runId: run.id, seq: BigInt(e.seq), time: timestampFromMs(e.time) };
  const { event } = e;
  switch (event.type) {
    case "accepted":
      return create(RunEventSchema, { ...base, event: { case: "accepted", value: { run: toRun(run) } } });
    case "waiting": {
      const pending = event.pending.map((p) => ({ ...p, step: event.step, call: event.calls.find((c) => c.id === p.toolCallId)! }));
      return create(RunEventSchema, { ...base, event: { case: "waiting", value: { pending: pending.map(toPending) } } });
    }
    case "step_restarted":
      return create(RunEventSchema, { ...base, event: { case: "stepRestarted", value: { step: event.step } } });
    case "failed":
      return create(RunEventSchema, { ...base, event: { case: "failed", value: event.error } });
    case "cancelled":
      return create(RunEventSchema, {
        ...base,
        event: { case: "cancelled", value: { mode: event.mode === "rollback" ? ProtoCancelMode.ROLLBACK : ProtoCancelMode.INTERRUPT } },
      });
    default: {
      // The onion's events have the same cases and messages as ExecuteStream's.
      const same = toStreamResponse(event, run.input).event;
      return create(RunEventSchema, { ...base, event: same as RunEvent["event"] });
    }
  }
}
