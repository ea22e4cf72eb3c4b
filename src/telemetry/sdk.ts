import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { ConsoleMetricExporter, PeriodicExportingMetricReader, type IMetricReader } from "@opentelemetry/sdk-metrics";
import { NodeSDK } from "@opentelemetry/sdk-node";
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { PromiseContextManager } from "./promise-context.ts";
import { list, metricsWanted } from "./wanted.ts";

type Env = Readonly<Record<string, string | undefined>>;

function metricReaders(env: Env, prometheus: PrometheusExporter | undefined): IMetricReader[] {
  const readers: IMetricReader[] = prometheus ? [prometheus] : [];
  if (!metricsWanted(env)) return readers;
  const exporters = list(env.OTEL_METRICS_EXPORTER);
  const wanted = exporters.length ? exporters : ["otlp"];
  const interval = Number(env.OTEL_METRIC_EXPORT_INTERVAL) || 60_000;
  if (wanted.includes("otlp")) readers.push(new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter(), exportIntervalMillis: interval }));
  if (wanted.includes("console")) readers.push(new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis: interval }));
  return readers;
}

/** The started SDK and what the runtime needs from it. */
export interface StartedSdk {
  sdk: NodeSDK;
  prometheus: PrometheusExporter | undefined;
  metricsOn: boolean;
}

/** Starts NodeSDK with exactly the exporters asked for; registers the global providers, propagator and context manager. */
export function startSdk(env: Env, service: string, tracing: boolean, prometheusOn: boolean, spanProcessors: SpanProcessor[] | undefined): StartedSdk {
  const prometheus = prometheusOn ? new PrometheusExporter({ preventServerStart: true }) : undefined;
  const readers = metricReaders(env, prometheus);
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME || service,
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: service, [ATTR_SERVICE_VERSION]: "0.1.0" }),
    // Only OTEL_RESOURCE_ATTRIBUTES: host and process detectors add little and differ between runtimes.
    resourceDetectors: [envDetector],
    // Given explicitly so that NodeSDK's defaults (OTLP for everything) never apply unasked.
    spanProcessors: tracing ? spanProcessors : [],
    metricReaders: readers,
    logRecordProcessors: [],
    instrumentations: [],
    // Undefined: the SDK's AsyncLocalStorage manager, where V8's promise hooks are not there.
    contextManager: PromiseContextManager.supported() ? new PromiseContextManager() : undefined,
  });
  sdk.start();
  return { sdk, prometheus, metricsOn: readers.length > 0 };
}
