import { type ConnectError, invalidArgument, limitExceeded } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { AgentService, ExecuteBatchResponseSchema, ExecuteResponseSchema, ListAgentsResponseSchema } from "../gen/qingyu/agent/v1/agent_pb.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { toAgentResult, toExecuteInput } from "./convert.ts";
import { toStreamResponse } from "./run-events.ts";
import { admitted, onGeneration, onGenerationCall } from "./scope.ts";
import type { BatchGate } from "../executor/batch-gate.ts";
import { type ErrorEdge, sentReason } from "../transport/edge-error.ts";

/** Batch limits from config. */
interface BatchPolicy {
  defaultConcurrency: number;
  maxConcurrency: number;
  maxItems: number;
  maxItemsInFlight: number;
  maxQueuedItems: number;
}

/**
 * AgentService: proto in, the current generation's executor, proto out. Each
 * call holds the generation it started on, so a reload never changes the
 * pipeline under it.
 */
/**
 * `batchGate`: the server's one gate for batch items, shared by its ports and every generation (each reload re-reads its limits).
 * `edge`: logs what a failed batch item's error tells only the operator, as it does for a failed call.
 */
export function agentService(live: LiveRuntime, batchGate: BatchGate, edge: ErrorEdge): ServiceImpl<typeof AgentService.method> {
  return {
    async execute(req, call) {
      const input = toExecuteInput(req);
      const result = await onGenerationCall(live, call.signal, (gen) => gen.parts.executor.execute(input, call));
      return create(ExecuteResponseSchema, { result: toAgentResult(result), sessionId: input.sessionId });
    },

    async *executeStream(req, call) {
      const input = toExecuteInput(req);
      for await (const event of onGeneration(live, call.signal, (gen) => gen.parts.executor.stream(input, call))) yield toStreamResponse(event, input);
    },

    executeBatch(req, call) {
      // Refused as a whole before any item runs: one unauthenticated request must not become a
      // hundred item errors (and a hundred alerts). Items still run their onion, as Execute does.
      return admitted(live, call, { service: AgentService.typeName, method: "ExecuteBatch" }, async ({ gen }) => {
        const batch: BatchPolicy = gen.parts.config.executor.batch;
        if (req.requests.length === 0) throw invalidArgument("requests", "must not be empty");
        if (req.requests.length > batch.maxItems) {
          throw limitExceeded("requests", `has ${req.requests.length} items; the limit is ${batch.maxItems}`, "executor.batch.maxItems", batch.maxItems);
        }
        const inputs = req.requests.map((r, i) => toExecuteInput(r, `requests[${i}].`));
        const concurrency = Math.min(req.maxConcurrency || batch.defaultConcurrency, batch.maxConcurrency);
        // One gate per server across ports and reloads: the bound is on the process's work.
        batchGate.configure(batch);
        const ticket = batchGate.admit(inputs.length);
        const close = () => ticket.close();
        call.signal.addEventListener("abort", close, { once: true });
        let outcomes;
        try {
          outcomes = await gen.parts.executor.batch(inputs, concurrency, call, ticket);
        } finally {
          call.signal.removeEventListener("abort", close);
          ticket.close();
        }
        return create(ExecuteBatchResponseSchema, {
          items: outcomes.map((o) =>
            "result" in o
              ? { sessionId: o.sessionId, outcome: { case: "result" as const, value: toAgentResult(o.result) } }
              : {
                  sessionId: o.sessionId,
                  outcome: { case: "error" as const, value: itemError(o.error, edge) },
                },
          ),
        });
      });
    },

    listAgents(_req, call) {
      return admitted(live, call, { service: AgentService.typeName, method: "ListAgents" }, async ({ gen }) =>
        create(ListAgentsResponseSchema, {
          agents: gen.parts.agents.list().map((a) => ({ agentId: a.id, description: a.description, provider: a.provider, model: a.model })),
        }),
      );
    },
  };
}

/** A failed batch item as its BatchError: what a failed call would send, and logged as a failed call's error is. */
function itemError(error: ConnectError, edge: ErrorEdge) {
  edge.record(error);
  return { code: error.code, message: error.rawMessage, ...sentReason(error) };
}
