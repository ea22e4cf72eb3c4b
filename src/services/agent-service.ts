import { create } from "@bufbuild/protobuf";
import {
  AgentService,
  ExecuteBatchResponseSchema,
  ExecuteResponseSchema,
  ExecuteStreamResponseSchema,
  ListAgentsResponseSchema,
  type ExecuteStreamResponse,
} from "../gen/qingyu/agent/v1/agent_pb.ts";
import type { AgentRegistry } from "../agents/registry.ts";
import { invalidArgument } from "../errors.ts";
import type { Executor } from "../executor/executor.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { toAgentResult, toExecuteInput } from "./convert.ts";

/** Batch limits from config. */
export interface BatchPolicy {
  defaultConcurrency: number;
  maxConcurrency: number;
  maxItems: number;
}

/** AgentService: proto in, executor, proto out. */
export function agentService(executor: Executor, agents: AgentRegistry, batch: BatchPolicy): ServiceImpl<typeof AgentService.method> {
  return {
    async execute(req, call) {
      const result = await executor.execute(toExecuteInput(req), call);
      return create(ExecuteResponseSchema, { result: toAgentResult(result), sessionId: req.sessionId });
    },

    async *executeStream(req, call) {
      for await (const event of executor.stream(toExecuteInput(req), call)) {
        let message: ExecuteStreamResponse;
        switch (event.type) {
          case "started":
            message = create(ExecuteStreamResponseSchema, {
              event: { case: "started", value: { agentId: event.agentId ?? req.agentId, sessionId: req.sessionId, model: event.model } },
            });
            break;
          case "delta":
            message = create(ExecuteStreamResponseSchema, { event: { case: "delta", value: { text: event.text } } });
            break;
          case "completed":
            message = create(ExecuteStreamResponseSchema, { event: { case: "completed", value: toAgentResult(event.result) } });
            break;
        }
        yield message;
      }
    },

    async executeBatch(req, call) {
      if (req.requests.length === 0) throw invalidArgument("requests", "must not be empty");
      if (req.requests.length > batch.maxItems) {
        throw invalidArgument("requests", `has ${req.requests.length} items; the limit is ${batch.maxItems}`);
      }
      const concurrency = Math.min(req.maxConcurrency || batch.defaultConcurrency, batch.maxConcurrency);
      const outcomes = await executor.batch(req.requests.map(toExecuteInput), concurrency, call);
      return create(ExecuteBatchResponseSchema, {
        items: outcomes.map((o) =>
          "result" in o
            ? { sessionId: o.sessionId, outcome: { case: "result" as const, value: toAgentResult(o.result) } }
            : { sessionId: o.sessionId, outcome: { case: "error" as const, value: { code: o.error.code, message: o.error.rawMessage } } },
        ),
      });
    },

    async listAgents() {
      return create(ListAgentsResponseSchema, {
        agents: agents.list().map((a) => ({ agentId: a.id, description: a.description, provider: a.provider, model: a.model })),
      });
    },
  };
}
