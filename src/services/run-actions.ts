import { invalidArgument } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { ExecuteRequestSchema } from "../gen/qingyu/agent/v1/agent_pb.ts";
import {
  CancelRunResponseSchema,
  SubmitApprovalResponseSchema,
  SubmitToolResultsResponseSchema,
  type CancelRunRequest,
  type CancelRunResponse,
  type StartRunRequest,
  type SubmitApprovalRequest,
  type SubmitApprovalResponse,
  type SubmitToolResultsRequest,
  type SubmitToolResultsResponse,
} from "../gen/qingyu/agent/v1/run_pb.ts";
import type { CallInfo, ExecuteInput } from "../executor/context.ts";
import { runOwner } from "../pipeline/acting.ts";
import type { RunManager } from "../runs/run-manager.ts";
import type { RunRecord, RunSettings } from "../runs/types.ts";
import { toExecuteInput } from "./convert.ts";
import { ids } from "./ids.ts";
import { fromProtoCancel, toRun, toRunSettings } from "./run-convert.ts";
import type { Admitted } from "./scope.ts";

// What an approver may send: arguments as big as a tool's, a note for the model.
const MAX_ARGUMENTS = 64 * 1024;
const MAX_MESSAGE = 4096;
const MAX_RESULTS = 64;

/** A StartRun request checked (before admission: a malformed one costs no admit). */
export interface StartRequest {
  input: ExecuteInput;
  settings: RunSettings;
  key: string;
}

/** Checks a StartRun request's fields. */
export function parseStart(req: StartRunRequest): StartRequest {
  return {
    input: toExecuteInput(req.execute ?? create(ExecuteRequestSchema), "execute."),
    settings: toRunSettings(req.options),
    key: ids.key(req.options?.idempotencyKey ?? "", "options.idempotency_key"),
  };
}

/** A SubmitApproval request checked. */
export function parseApproval(req: SubmitApprovalRequest, runId = ids.run(req.runId)) {
  const toolCallId = ids.key(req.toolCallId, "tool_call_id");
  if (req.arguments.length > MAX_ARGUMENTS) throw invalidArgument("arguments", `is longer than ${MAX_ARGUMENTS} characters`);
  if (req.message.length > MAX_MESSAGE) throw invalidArgument("message", `is longer than ${MAX_MESSAGE} characters`);
  if (!runId) throw invalidArgument("run_id", "is required");
  if (!toolCallId) throw invalidArgument("tool_call_id", "is required");
  const decision = { approved: req.approved, ...(req.arguments ? { arguments: req.arguments } : {}), ...(req.message ? { message: req.message } : {}) };
  return { runId, toolCallId, decision };
}

/** A SubmitToolResults request checked. */
export function parseResults(req: SubmitToolResultsRequest, runId = ids.run(req.runId)) {
  if (req.results.length > MAX_RESULTS) throw invalidArgument("results", `has ${req.results.length} results; at most ${MAX_RESULTS}`);
  const results = req.results.map((r, i) => {
    const output = r.output?.output ?? "";
    if (output.length > MAX_ARGUMENTS) throw invalidArgument(`results[${i}].output.output`, `is longer than ${MAX_ARGUMENTS} characters`);
    return { toolCallId: ids.key(r.toolCallId, `results[${i}].tool_call_id`), output, isError: r.output?.isError ?? false };
  });
  if (!runId) throw invalidArgument("run_id", "is required");
  return { runId, results };
}

/**
 * What RunService's RPCs do once admitted, shared by the unary and streaming
 * forms and by the bidirectional Run: a run acts as the user its start did,
 * and only that user (or an admin) may read, decide, answer or cancel it.
 */
export class RunActions {
  constructor(private readonly runs: RunManager) {}

  /** Starts the run (or finds the one its idempotency key started) as the admitted caller. */
  async start(a: Admitted, { input, settings, key }: StartRequest, header: CallInfo["header"]): Promise<RunRecord> {
    input.userId = runOwner(a, a.user) || a.user;
    if (a.principal) settings.startedBy = a.principal;
    if (!input.task) throw invalidArgument("execute.task", "is required");
    const agents = a.gen.parts.agents;
    if (input.agentId && !agents.get(input.agentId)) throw agents.refusal(input.agentId);
    if (!input.agentId && !input.sessionId) throw invalidArgument("execute.agent_id", "is required (or a session_id bound to an agent)");
    return (await this.runs.start(input, settings, header, key)).run;
  }

  /** The run, when the caller may see it. */
  get(a: Admitted, runId: string): Promise<RunRecord> {
    if (!runId) throw invalidArgument("run_id", "is required");
    return this.runs.get(runId, runOwner(a, a.user));
  }

  async cancel(a: Admitted, req: CancelRunRequest, runId = ids.run(req.runId)): Promise<CancelRunResponse> {
    const run = await this.get(a, runId);
    return create(CancelRunResponseSchema, { run: toRun(await this.runs.cancel(run, fromProtoCancel(req.mode))) });
  }

  async approve(a: Admitted, { runId, toolCallId, decision }: ReturnType<typeof parseApproval>): Promise<SubmitApprovalResponse> {
    const run = await this.get(a, runId);
    const { decided, run: after } = await this.runs.decide(run, toolCallId, decision);
    return create(SubmitApprovalResponseSchema, { decided, run: toRun(after) });
  }

  async answer(a: Admitted, { runId, results }: ReturnType<typeof parseResults>): Promise<SubmitToolResultsResponse> {
    const run = await this.get(a, runId);
    const { accepted, run: after } = await this.runs.answer(run, results);
    return create(SubmitToolResultsResponseSchema, { accepted, run: toRun(after) });
  }
}
