import { ToolError, type ToolContext } from "@qingyu/plugin-api";
import * as grpc from "@grpc/grpc-js";
import type { CallToolResponse } from "../../gen/qingyu/agent/v1/tool_pb.ts";
import type { ToolServiceChannel } from "./channel.ts";

/** One CallTool: which backend and tool. */
interface CallTarget {
  backend: string;
  /** The backend's own name of the tool (not namespaced). */
  tool: string;
}

/**
 * Runs one call over CallTool: forwards progress to ctx.progress and resolves
 * with the output. The signal cancels the RPC and rejects at once with its
 * reason (the backend's answer is not waited for); a tool's is_error, a status
 * other than OK, or a stream without an output rejects with a ToolError.
 */
export function callTool(channel: ToolServiceChannel, target: CallTarget, args: unknown, ctx: ToolContext): Promise<string> {
  const { signal } = ctx;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const call = channel.callTool(
      {
        name: target.tool,
        arguments: JSON.stringify(args ?? {}),
        runId: ctx.runId,
        toolCallId: ctx.toolCallId,
        idempotencyKey: ctx.idempotencyKey,
        attempt: ctx.attempt,
        agentId: ctx.agentId,
        userId: ctx.userId,
        sessionId: ctx.sessionId,
      },
      // The run's deadline travels with the call. The tool's timeout does not: progress restarts it, which a
      // gRPC deadline cannot do, so the loop's timer enforces it by firing ctx.signal, which cancels the call.
      ctx.deadline ?? Infinity,
    );
    let settled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      finish();
    };
    const onAbort = () => {
      settle(() => reject(signal.reason as Error));
      call.cancel();
    };
    // The model (and the caller, in the tool result) reads this: the backend's name, not its address.
    const failed = (why: string) => new ToolError(`backend "${target.backend}" tool "${target.tool}" failed: ${why}`);
    call.on("data", (response: CallToolResponse) => {
      if (settled) return;
      const { event } = response;
      if (event.case === "progress") {
        const { message, progress, total } = event.value;
        // proto3 has no absent double: a total of 0 means none was given.
        ctx.progress(message, total > 0 || progress !== 0 ? progress : undefined, total > 0 ? total : undefined);
      } else if (event.case === "output") {
        const { output, isError } = event.value;
        settle(() => (isError ? reject(new ToolError(output)) : resolve(output)));
      }
    });
    call.on("error", (err: grpc.ServiceError) => settle(() => reject(failed(`${grpc.status[err.code] ?? err.code}: ${err.details}`))));
    // "end" comes after every message was read, so an output still queued is not missed.
    call.on("end", () => settle(() => reject(failed("the stream ended without an output"))));
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
