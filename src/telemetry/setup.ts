import { context, metrics, propagation, trace, type Meter, type Tracer } from "@opentelemetry/api";
import type { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import type { NodeSDK } from "@opentelemetry/sdk-node";
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Instruments } from "./instruments.ts";
import type { ExportLog } from "./worker-processor.ts";
import { metricsWanted, tracesWanted } from "./wanted.ts";

type Env = Readonly<Record<string, string | undefined>>;

/** How telemetry is set up; the rest comes from the standard OTEL_* variables. */
export interface TelemetryOptions {
  env: Env;
  /** Serve Prometheus metrics (the admin port is configured). */
  prometheus: boolean;
  /** Span processors to use instead of those OTEL_* names (tests export to memory). */
  spanProcessors?: SpanProcessor[];
  /** Where span drops and exporter failures are reported (the server's log). */
  log?: ExportLog;
}

const quiet: ExportLog = { warn: () => {}, error: () => {} };

const SERVICE = "qingyu-agent-runtime";

/** The process's tracer, meter and instruments; created once in main and handed down. */
export class Telemetry {
  private constructor(
    /** Whether spans are recorded: code creates them only then, so off costs nothing. */
    readonly tracing: boolean,
    readonly tracer: Tracer,
    readonly meter: Meter,
    readonly instruments: Instruments,
    /** Serves /metrics when the admin port is on. */
    readonly prometheus: PrometheusExporter | undefined,
    private readonly sdk: NodeSDK | undefined,
  ) {}

  /** Whether anything is recorded (spans or metrics): when not, the RPC wrappers are left out altogether. */
  get recording(): boolean {
    return this.sdk !== undefined;
  }

  /** Telemetry that records nothing (tests, tools, and servers that ask for none). */
  static disabled(): Telemetry {
    const meter = metrics.getMeterProvider().getMeter(SERVICE);
    return new Telemetry(false, trace.getTracer(SERVICE), meter, new Instruments(meter), undefined, undefined);
  }

  /**
   * Starts what the environment and config ask for. The SDK is imported only
   * then: a server that records nothing does not even load it (it is large,
   * and a bigger heap costs every call some garbage-collection time).
   */
  static async start(options: TelemetryOptions): Promise<Telemetry> {
    const { env } = options;
    const tracing = options.spanProcessors !== undefined || tracesWanted(env);
    if (!tracing && !options.prometheus && !metricsWanted(env)) return Telemetry.disabled();
    const { startSdk } = await import("./sdk.ts");
    // OTEL_* exporters run in a worker thread: serialising and sending spans would otherwise cost every call.
    const processors = options.spanProcessors ?? (tracing ? await (await import("./export-thread.ts")).exportProcessors(env, options.log ?? quiet) : undefined);
    const { sdk, prometheus, metricsOn } = startSdk(env, SERVICE, tracing, options.prometheus, processors);
    const meter = metricsOn ? metrics.getMeter(SERVICE) : metrics.getMeterProvider().getMeter(SERVICE);
    return new Telemetry(tracing, trace.getTracer(SERVICE), meter, new Instruments(meter), prometheus, sdk);
  }

  /** Flushes what is buffered and unregisters the SDK (so a test can start another). */
  async shutdown(): Promise<void> {
    if (!this.sdk) return;
    try {
      await this.sdk.shutdown();
    } finally {
      trace.disable();
      metrics.disable();
      propagation.disable();
      context.disable();
    }
  }
}
