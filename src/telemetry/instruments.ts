import type { Counter, Histogram, Meter, UpDownCounter } from "@opentelemetry/api";

/** Bucket bounds for call durations, in ms: a unary echo is ~0.2 ms, an LLM answer tens of seconds. */
const DURATION_MS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000];
const FIRST_TOKEN_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The runtime's own metrics. Names follow the OpenTelemetry semantic
 * conventions where one exists (rpc.server.duration); Prometheus shows them
 * with dots as underscores and the unit appended.
 */
export class Instruments {
  /** Per RPC, by rpc.service, rpc.method, rpc.grpc.status_code. */
  readonly rpcDuration: Histogram;
  /** Server streams open now, by rpc.method. */
  readonly activeStreams: UpDownCounter;
  /** From the start of a call to its first token, by agent and model. */
  readonly timeToFirstToken: Histogram;
  /** LLM tokens, by agent, model and direction (input, output). */
  readonly tokens: Counter;
  /** Event-handler runs that threw or rejected, by handler. */
  readonly handlerFailures: Counter;
  /** Model steps of tool runs, by agent and how each ended (finish reason). */
  readonly steps: Counter;
  /** Tool calls' durations, by tool and outcome (ok, error, timeout, ...); its count is the number of calls. */
  readonly toolDuration: Histogram;

  constructor(meter: Meter) {
    this.rpcDuration = meter.createHistogram("rpc.server.duration", {
      unit: "ms",
      description: "Duration of RPCs served, by method and status code",
      advice: { explicitBucketBoundaries: DURATION_MS },
    });
    this.activeStreams = meter.createUpDownCounter("qingyu.rpc.active_streams", { description: "Server-streaming RPCs in progress" });
    this.timeToFirstToken = meter.createHistogram("qingyu.agent.time_to_first_token", {
      unit: "s",
      description: "Time from the start of an agent call to its first token",
      advice: { explicitBucketBoundaries: FIRST_TOKEN_S },
    });
    this.tokens = meter.createCounter("qingyu.agent.tokens", { description: "LLM tokens used, by agent, model and direction" });
    this.handlerFailures = meter.createCounter("qingyu.event_handler.failures", { description: "Event-handler runs that failed" });
    this.steps = meter.createCounter("qingyu.agent.steps", { description: "Model steps of tool-using runs, by agent and finish reason" });
    this.toolDuration = meter.createHistogram("gen_ai.tool.duration", {
      unit: "ms",
      description: "Duration of tool calls, by tool and outcome",
      advice: { explicitBucketBoundaries: DURATION_MS },
    });
  }
}
