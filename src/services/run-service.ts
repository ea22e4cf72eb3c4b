import { invalidArgument } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { ExecuteRequestSchema } from "../gen/qingyu/agent/v1/agent_pb.ts";
import {
  CancelRunResponseSchema,
  GetRunResponseSchema,
  ListRunsResponseSchema,
  RunService,
  StartRunResponseSchema,
  SubmitApprovalResponseSchema,
  SubmitToolResultsResponseSchema,
  WatchRunResponseSchema,
} from "../gen/qingyu/agent/v1/run_pb.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import { runOwner } from "../pipeline/acting.ts";
import type { RunManager } from "../runs/run-manager.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { toExecuteInput } from "./convert.ts";
import { ids } from "./ids.ts";
import { fromProtoCancel, fromProtoStatus, toRun, toRunEvent, toRunSettings } from "./run-convert.ts";
import { admitted, type Admitted } from "./scope.ts";

const SERVICE = RunService.typeName;
// What an approver may send: arguments as big as a tool's, a note for the model.
const MAX_ARGUMENTS = 64 * 1024;
const MAX_MESSAGE = 4096;
const MAX_RESULTS = 64;

/**
 * RunService: durable runs. Each RPC passes the pipeline's admit hooks; a run
 * acts as the user its start did, and only that user (or an admin) may watch,
 * read, list or cancel it.
 */
export function runService(runs: RunManager, live: LiveRuntime): ServiceImpl<typeof RunService.method> {
  const admit = (call: Parameters<typeof admitted>[1], method: string, userId: string) =>
    admitted(live, call, { service: SERVICE, method, userId }, async (a: Admitted) => a);

  return {
    async *startRun(req, call) {
      const input = toExecuteInput(req.execute ?? create(ExecuteRequestSchema), "execute.");
      const settings = toRunSettings(req.options);
      const key = ids.key(req.options?.idempotencyKey ?? "", "options.idempotency_key");
      const a = await admit(call, "StartRun", input.userId);
      input.userId = runOwner(a, a.user) || a.user;
      if (a.principal) settings.startedBy = a.principal;
      if (!input.task) throw invalidArgument("execute.task", "is required");
      const agents = a.gen.parts.agents;
      if (input.agentId && !agents.get(input.agentId)) throw agents.refusal(input.agentId);
      if (!input.agentId && !input.sessionId) throw invalidArgument("execute.agent_id", "is required (or a session_id bound to an agent)");
      const { run } = await runs.start(input, settings, (name) => call.header(name), key);
      if (settings.background) {
        const accepted = { seq: 1, time: run.createTime, event: { type: "accepted" as const } };
        yield create(StartRunResponseSchema, { event: toRunEvent(accepted, run) });
        return;
      }
      let ended = false;
      try {
        for await (const e of runs.watch(run, 0, call.signal)) {
          yield create(StartRunResponseSchema, { event: toRunEvent(e, run) });
          if (e.event.type === "completed" || e.event.type === "failed" || e.event.type === "cancelled") ended = true;
        }
      } finally {
        // A caller that goes away from a run it asked to be cancelled on disconnect: cancel it, keeping what it did.
        if (!ended && call.signal.aborted && settings.onDisconnect === "cancel") await runs.cancel(run, "interrupt").catch(() => undefined);
      }
    },

    async *watchRun(req, call) {
      const runId = ids.run(req.runId);
      if (!runId) throw invalidArgument("run_id", "is required");
      const a = await admit(call, "WatchRun", ids.user(req.userId));
      const run = await runs.get(runId, runOwner(a, a.user));
      for await (const e of runs.watch(run, Number(req.afterSeq), call.signal)) yield create(WatchRunResponseSchema, { event: toRunEvent(e, run) });
    },

    cancelRun(req, call) {
      const runId = ids.run(req.runId);
      return admitted(live, call, { service: SERVICE, method: "CancelRun", userId: ids.user(req.userId) }, async (a) => {
        if (!runId) throw invalidArgument("run_id", "is required");
        const run = await runs.get(runId, runOwner(a, a.user));
        return create(CancelRunResponseSchema, { run: toRun(await runs.cancel(run, fromProtoCancel(req.mode))) });
      });
    },

    getRun(req, call) {
      const runId = ids.run(req.runId);
      return admitted(live, call, { service: SERVICE, method: "GetRun", userId: ids.user(req.userId) }, async (a) => {
        if (!runId) throw invalidArgument("run_id", "is required");
        return create(GetRunResponseSchema, { run: toRun(await runs.get(runId, runOwner(a, a.user))) });
      });
    },

    submitApproval(req, call) {
      const runId = ids.run(req.runId);
      const toolCallId = ids.key(req.toolCallId, "tool_call_id");
      if (req.arguments.length > MAX_ARGUMENTS) throw invalidArgument("arguments", `is longer than ${MAX_ARGUMENTS} characters`);
      if (req.message.length > MAX_MESSAGE) throw invalidArgument("message", `is longer than ${MAX_MESSAGE} characters`);
      return admitted(live, call, { service: SERVICE, method: "SubmitApproval", userId: ids.user(req.userId) }, async (a) => {
        if (!runId) throw invalidArgument("run_id", "is required");
        if (!toolCallId) throw invalidArgument("tool_call_id", "is required");
        const run = await runs.get(runId, runOwner(a, a.user));
        const decision = { approved: req.approved, ...(req.arguments ? { arguments: req.arguments } : {}), ...(req.message ? { message: req.message } : {}) };
        const { decided, run: after } = await runs.decide(run, toolCallId, decision);
        return create(SubmitApprovalResponseSchema, { decided, run: toRun(after) });
      });
    },

    submitToolResults(req, call) {
      const runId = ids.run(req.runId);
      if (req.results.length > MAX_RESULTS) throw invalidArgument("results", `has ${req.results.length} results; at most ${MAX_RESULTS}`);
      const results = req.results.map((r, i) => {
        const output = r.output?.output ?? "";
        if (output.length > MAX_ARGUMENTS) throw invalidArgument(`results[${i}].output.output`, `is longer than ${MAX_ARGUMENTS} characters`);
        return { toolCallId: ids.key(r.toolCallId, `results[${i}].tool_call_id`), output, isError: r.output?.isError ?? false };
      });
      return admitted(live, call, { service: SERVICE, method: "SubmitToolResults", userId: ids.user(req.userId) }, async (a) => {
        if (!runId) throw invalidArgument("run_id", "is required");
        const run = await runs.get(runId, runOwner(a, a.user));
        const { accepted, run: after } = await runs.answer(run, results);
        return create(SubmitToolResultsResponseSchema, { accepted, run: toRun(after) });
      });
    },

    listRuns(req, call) {
      const sessionId = ids.session(req.sessionId);
      const pageToken = ids.pageToken(req.pageToken);
      const statuses = req.statuses.map((s, i) => fromProtoStatus(s, `statuses[${i}]`));
      return admitted(live, call, { service: SERVICE, method: "ListRuns", userId: ids.user(req.userId) }, async (a) => {
        const user = runOwner(a, a.user);
        if (!user && !sessionId && !a.principal?.admin) throw invalidArgument("user_id", "is required (or session_id)");
        const page = await runs.list({ userId: user || undefined, sessionId: sessionId || undefined, statuses }, req.pageSize, pageToken);
        return create(ListRunsResponseSchema, { runs: page.items.map(toRun), nextPageToken: page.nextPageToken });
      });
    },
  };
}
