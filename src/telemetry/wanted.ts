// What the OTEL_* environment asks for, readable without loading the SDK: a
// server that records nothing must not pay for the SDK's modules in its heap.

type Env = Readonly<Record<string, string | undefined>>;

/** A comma-separated OTEL_* list, trimmed, empties dropped. */
export const list = (value: string | undefined) =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/**
 * Tracing is off unless the environment asks for it (OTEL_TRACES_EXPORTER, or
 * an OTLP endpoint): then NodeSDK builds the exporters from the standard
 * variables (otlp over http/protobuf, http/json or grpc; console).
 */
export function tracesWanted(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED === "true") return false;
  const exporters = list(env.OTEL_TRACES_EXPORTER);
  if (exporters.length) return !exporters.includes("none");
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Whether any metric reader would be set up besides Prometheus. */
export function metricsWanted(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED === "true") return false;
  const exporters = list(env.OTEL_METRICS_EXPORTER);
  if (exporters.length) return exporters.some((e) => e === "otlp" || e === "console");
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT);
}
