import { context, metrics, propagation, trace, type Meter, type Tracer } from "@opentelemetry/api";
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { ConsoleMetricExporter, PeriodicExportingMetricReader, type IMetricReader } from "@opentelemetry/sdk-metrics";
import { NodeSDK } from "@opentelemetry/sdk-node";
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { Instruments } from "./instruments.ts";

type Env = Readonly<Record<string, string | undefined>>;

/** How telemetry is set up; the rest comes from the standard OTEL_* variables. */
export interface TelemetryOptions {
  env: Env;
  /** Serve Prometheus metrics (the admin port is configured). */
  prometheus: boolean;
  /** Span processors to use instead of those OTEL_* names (tests export to memory). */
  spanProcessors?: SpanProcessor[];
}

const SERVICE = "qingyu-agent-runtime";

const list = (value: string | undefined) => (value ?? "").split(",").map((s) => s.trim()).filter(Boolean);

/**
 * Tracing is off unless the environment asks for it (OTEL_TRACES_EXPORTER, or
 * an OTLP endpoint): then NodeSDK builds the exporters from the standard
 * variables (otlp over http/protobuf, http/json or grpc; console). Off means
 * no SDK at all: the no-op tracer, and code that skips its spans entirely.
 */
function tracesWanted(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED === "true") return false;
  const exporters = list(env.OTEL_TRACES_EXPORTER);
  if (exporters.length) return !exporters.includes("none");
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

function metricReaders(env: Env, prometheus: PrometheusExporter | undefined): IMetricReader[] {
  const readers: IMetricReader[] = prometheus ? [prometheus] : [];
  if (env.OTEL_SDK_DISABLED === "true") return readers;
  const exporters = list(env.OTEL_METRICS_EXPORTER);
  const wanted = exporters.length ? exporters : env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT ? ["otlp"] : [];
  const interval = Number(env.OTEL_METRIC_EXPORT_INTERVAL) || 60_000;
  if (wanted.includes("otlp")) readers.push(new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter(), exportIntervalMillis: interval }));
  if (wanted.includes("console")) readers.push(new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis: interval }));
  return readers;
}

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

  /** Telemetry that records nothing (tests, tools). */
  static disabled(): Telemetry {
    const meter = metrics.getMeterProvider().getMeter(SERVICE);
    return new Telemetry(false, trace.getTracer(SERVICE), meter, new Instruments(meter), undefined, undefined);
  }

  static start(options: TelemetryOptions): Telemetry {
    const { env } = options;
    const tracing = options.spanProcessors !== undefined || tracesWanted(env);
    const prometheus = options.prometheus ? new PrometheusExporter({ preventServerStart: true }) : undefined;
    const readers = metricReaders(env, prometheus);
    if (!tracing && readers.length === 0) return Telemetry.disabled();
    const sdk = new NodeSDK({
      serviceName: env.OTEL_SERVICE_NAME || SERVICE,
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: SERVICE, [ATTR_SERVICE_VERSION]: "0.1.0" }),
      // Only OTEL_RESOURCE_ATTRIBUTES: host and process detectors add little and differ between runtimes.
      resourceDetectors: [envDetector],
      // Given explicitly so that NodeSDK's defaults (OTLP for everything) never apply unasked.
      spanProcessors: tracing ? options.spanProcessors : [],
      metricReaders: readers,
      logRecordProcessors: [],
      instrumentations: [],
    });
    sdk.start();
    const meter = readers.length ? metrics.getMeter(SERVICE) : metrics.getMeterProvider().getMeter(SERVICE);
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
