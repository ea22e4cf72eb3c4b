import { invalidArgument } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import {
  AgentService,
  ExecuteBatchResponseSchema,
  ExecuteResponseSchema,
  ExecuteStreamResponseSchema,
  ListAgentsResponseSchema,
  type ExecuteStreamResponse,
} from "../gen/qingyu/agent/v1/agent_pb.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { toAgentResult, toExecuteInput } from "./convert.ts";
import { untilAborted } from "../abort.ts";
import { admitted, onGeneration } from "./scope.ts";

/** Batch limits from config. */
export interface BatchPolicy {
  defaultConcurrency: number;
  maxConcurrency: number;
  maxItems: number;
}

/**
 * AgentService: proto in, the current generation's executor, proto out. Each
 * call holds the generation it started on, so a reload never changes the
 * pipeline under it.
 */
export function agentService(live: LiveRuntime): ServiceImpl<typeof AgentService.method> {
  return {
    async execute(req, call) {
      const gen = live.current;
      gen.enter();
      try {
        // Not held past the call's end by code that ignores the signal: the generation must be released.
        const result = await untilAborted(gen.parts.executor.execute(toExecuteInput(req), call), call.signal);
        return create(ExecuteResponseSchema, { result: toAgentResult(result), sessionId: req.sessionId });
      } finally {
        gen.leave();
      }
    },

    async *executeStream(req, call) {
      for await (const event of onGeneration(live, call.signal, (gen) => gen.parts.executor.stream(toExecuteInput(req), call))) {
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
      const gen = live.current;
      gen.enter();
      let outcomes;
      try {
        const batch: BatchPolicy = gen.parts.config.executor.batch;
        if (req.requests.length === 0) throw invalidArgument("requests", "must not be empty");
        if (req.requests.length > batch.maxItems) {
          throw invalidArgument("requests", `has ${req.requests.length} items; the limit is ${batch.maxItems}`);
        }
        const concurrency = Math.min(req.maxConcurrency || batch.defaultConcurrency, batch.maxConcurrency);
        outcomes = await gen.parts.executor.batch(req.requests.map(toExecuteInput), concurrency, call);
      } finally {
        gen.leave();
      }
      return create(ExecuteBatchResponseSchema, {
        items: outcomes.map((o) =>
          "result" in o
            ? { sessionId: o.sessionId, outcome: { case: "result" as const, value: toAgentResult(o.result) } }
            : { sessionId: o.sessionId, outcome: { case: "error" as const, value: { code: o.error.code, message: o.error.rawMessage } } },
        ),
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
