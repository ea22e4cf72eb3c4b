import { invalidArgument } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { GetRunResponseSchema, ListRunsResponseSchema, RunService, StartRunResponseSchema, WatchRunResponseSchema } from "../gen/qingyu/agent/v1/run_pb.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import { runOwner } from "../pipeline/acting.ts";
import type { RunManager } from "../runs/run-manager.ts";
import type { CallContext, ServiceImpl } from "../transport/types.ts";
import { ids } from "./ids.ts";
import { parseApproval, parseResults, parseStart, RunActions } from "./run-actions.ts";
import { fromProtoStatus, toRun } from "./run-convert.ts";
import { followRun, runStream } from "./run-stream.ts";
import { admitted, type Admitted } from "./scope.ts";

const SERVICE = RunService.typeName;

/**
 * RunService: durable runs. Each RPC passes the pipeline's admit hooks; a run
 * acts as the user its start did, and only that user (or an admin) may watch,
 * read, list or cancel it.
 */
export function runService(runs: RunManager, live: LiveRuntime): ServiceImpl<typeof RunService.method> {
  const actions = new RunActions(runs);
  const admit = (call: CallContext, method: string, userId: string) => admitted(live, call, { service: SERVICE, method, userId }, async (a: Admitted) => a);

  return {
    async *startRun(req, call) {
      const start = parseStart(req);
      const run = await actions.start(await admit(call, "StartRun", start.input.userId), start, (name) => call.header(name));
      for await (const event of followRun(runs, run, 0, call.signal, start.settings)) yield create(StartRunResponseSchema, { event });
    },

    async *watchRun(req, call) {
      const runId = ids.run(req.runId);
      if (!runId) throw invalidArgument("run_id", "is required");
      const run = await actions.get(await admit(call, "WatchRun", ids.user(req.userId)), runId);
      for await (const event of followRun(runs, run, Number(req.afterSeq), call.signal)) yield create(WatchRunResponseSchema, { event });
    },

    run: runStream(actions, runs, (call, userId) => admit(call, "Run", userId)),

    cancelRun(req, call) {
      return admitted(live, call, { service: SERVICE, method: "CancelRun", userId: ids.user(req.userId) }, (a) => actions.cancel(a, req));
    },

    getRun(req, call) {
      const runId = ids.run(req.runId);
      return admitted(live, call, { service: SERVICE, method: "GetRun", userId: ids.user(req.userId) }, async (a) =>
        create(GetRunResponseSchema, { run: toRun(await actions.get(a, runId)) }),
      );
    },

    submitApproval(req, call) {
      const approval = parseApproval(req);
      return admitted(live, call, { service: SERVICE, method: "SubmitApproval", userId: ids.user(req.userId) }, (a) => actions.approve(a, approval));
    },

    submitToolResults(req, call) {
      const answers = parseResults(req);
      return admitted(live, call, { service: SERVICE, method: "SubmitToolResults", userId: ids.user(req.userId) }, (a) => actions.answer(a, answers));
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
