import { Code, ConnectError, type Principal, type ToolCallRecord, type ToolContext, type ToolOutcome } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import type { ReadyTool } from "../tools/catalog.ts";
import { boundedOutput, errorText, outputText } from "./tool-output.ts";

/** What every tool call of one run shares. */
export interface RunScope {
  readonly runId: string;
  readonly agentId: string;
  readonly userId: string;
  readonly principal: Principal | undefined;
  readonly sessionId: string;
  /** Fires when the run is cancelled or reaches its deadline. */
  readonly signal: AbortSignal;
  /** Epoch ms of the run's own deadline (a little before the call's), if the caller set one. */
  readonly deadline: number | undefined;
  readonly log: Logger;
  /** The agent's default timeout for tools that set none. */
  readonly defaultTimeoutMs: number;
  /** After a call's signal fires, how long it has to settle before it is abandoned. */
  readonly abandonAfterMs: number;
  readonly maxOutputBytes: number;
}

/** One call ready to run: its tool, the model's id and name, its checked arguments. */
export interface DispatchedCall {
  readonly ready: ReadyTool;
  readonly id: string;
  readonly step: number;
  /** JSON text, as the tool gets it. */
  readonly argumentsJson: string;
  readonly args: unknown;
  /** 1 on its first dispatch; more when a durable run resumed re-sends an idempotent call. */
  readonly attempt?: number;
}

// Long enough for a tool that stops on its signal to be seen stopping, short against the run's reserve (≥ 50 ms).
const DEADLINE_GRACE_MS = 20;

type Settled = { kind: "value"; value: unknown } | { kind: "error"; error: unknown } | { kind: "abandoned" };

/**
 * Runs one tool call under its own signal: fired by the run's (cancel,
 * deadline) and by the tool's timeout, which each progress report restarts.
 * A tool that has not settled `abandonAfterMs` after its signal fired is
 * abandoned: the run goes on without it and whatever it returns later is
 * dropped. Never throws: every ending is a record the model can be given.
 */
export async function runToolCall(call: DispatchedCall, scope: RunScope): Promise<ToolCallRecord> {
  const { tool } = call.ready;
  const timeoutMs = tool.timeoutMs ?? scope.defaultTimeoutMs;
  const controller = new AbortController();
  let timedOut = false;
  const onRunAbort = () => controller.abort(scope.signal.reason);
  scope.signal.addEventListener("abort", onRunAbort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new ConnectError(`tool "${tool.name}" timed out after ${timeoutMs} ms`, Code.DeadlineExceeded));
    }, timeoutMs);
  };
  arm();
  const ctx: ToolContext = {
    runId: scope.runId,
    toolCallId: call.id,
    // The run and the model's call id name this call wherever it is retried or resumed.
    idempotencyKey: `${scope.runId}:${call.id}`,
    attempt: call.attempt ?? 1,
    signal: controller.signal,
    deadline: scope.deadline,
    agentId: scope.agentId,
    userId: scope.userId,
    principal: scope.principal,
    sessionId: scope.sessionId,
    logger: scope.log.child({ tool: tool.name, toolCallId: call.id }),
    progress: () => {
      if (!controller.signal.aborted) arm();
    },
  };
  const started = performance.now();
  const settled = await new Promise<Settled>((resolve) => {
    let abandonTimer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => {
      // At the run's own deadline there is no grace to give: the result must leave before the caller's deadline.
      const atDeadline = scope.deadline !== undefined && Date.now() >= scope.deadline - 1;
      abandonTimer = setTimeout(() => resolve({ kind: "abandoned" }), atDeadline ? Math.min(scope.abandonAfterMs, DEADLINE_GRACE_MS) : scope.abandonAfterMs);
    };
    if (scope.signal.aborted) onRunAbort();
    controller.signal.addEventListener("abort", onAbort, { once: true });
    Promise.resolve()
      .then(() => tool.execute(call.args, ctx))
      .then(
        (value) => resolve({ kind: "value", value }),
        (error: unknown) => resolve({ kind: "error", error }),
      )
      .finally(() => {
        clearTimeout(abandonTimer);
        controller.signal.removeEventListener("abort", onAbort);
      });
  });
  clearTimeout(timer);
  scope.signal.removeEventListener("abort", onRunAbort);
  const durationMs = Math.round(performance.now() - started);
  const record = (outcome: ToolOutcome, output: string): ToolCallRecord => ({
    id: call.id,
    name: tool.name,
    arguments: call.argumentsJson,
    step: call.step,
    outcome,
    output: boundedOutput(output, scope.maxOutputBytes),
    durationMs,
    ...(tool.idempotent ? { idempotent: true } : {}),
  });
  if (settled.kind === "value" && !controller.signal.aborted) return record("ok", outputText(settled.value));
  if (controller.signal.aborted) {
    const why = timedOut ? `timed out after ${timeoutMs} ms` : scope.signal.aborted ? `stopped: ${errorText(scope.signal.reason)}` : "stopped";
    if (settled.kind === "abandoned") {
      scope.log.warn({ tool: tool.name, toolCallId: call.id, abandonAfterMs: scope.abandonAfterMs }, "tool ignored its signal and was abandoned");
      return record("abandoned", `the tool ${why} and did not stop within ${scope.abandonAfterMs} ms of being told to; it was abandoned`);
    }
    return record(timedOut ? "timeout" : "cancelled", `the tool ${why}`);
  }
  const error = (settled as { error: unknown }).error;
  if (!(error instanceof Error && error.name === "ToolError")) scope.log.debug({ tool: tool.name, toolCallId: call.id, err: error }, "tool failed");
  return record("error", errorText(error));
}
