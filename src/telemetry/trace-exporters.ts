// The span processors OTEL_* asks for, as NodeSDK would build them (otlp over
// http/protobuf, http/json or grpc, batched; console, unbatched). Built here
// rather than by NodeSDK because they run in the export worker, or, where no
// worker can start, in the main thread behind the same hand-off.
import { diag } from "@opentelemetry/api";
import { OTLPTraceExporter as GrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { list } from "./wanted.ts";

type Env = Readonly<Record<string, string | undefined>>;

function otlpExporter(env: Env): SpanExporter {
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || "http/protobuf";
  if (protocol === "grpc") return new GrpcExporter();
  if (protocol === "http/json") return new JsonExporter();
  if (protocol !== "http/protobuf") diag.warn(`unsupported OTLP traces protocol ${protocol}: using http/protobuf`);
  return new ProtoExporter();
}

const num = (value: string | undefined): number | undefined => (value && Number(value) >= 0 ? Number(value) : undefined);

/** The processors for OTEL_TRACES_EXPORTER (otlp when unset), with the OTEL_BSP_* batch settings. */
export function spanProcessorsFromEnv(env: Env): SpanProcessor[] {
  const names = [...new Set(list(env.OTEL_TRACES_EXPORTER))];
  const wanted = names.length === 0 || names.includes("none") ? ["otlp"] : names;
  const processors: SpanProcessor[] = [];
  for (const name of wanted) {
    if (name === "console") processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
    else if (name === "otlp")
      processors.push(
        new BatchSpanProcessor(otlpExporter(env), {
          maxQueueSize: num(env.OTEL_BSP_MAX_QUEUE_SIZE),
          scheduledDelayMillis: num(env.OTEL_BSP_SCHEDULE_DELAY),
          exportTimeoutMillis: num(env.OTEL_BSP_EXPORT_TIMEOUT),
          maxExportBatchSize: num(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE),
        }),
      );
    else diag.warn(`unrecognised OTEL_TRACES_EXPORTER value ${name}`);
  }
  return processors;
}
