import cluster from "node:cluster";
import type { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { env } from "../runtime/process.ts";
import { isMessage, type ListeningMessage, type MetricsReply, type MetricsRequest, WORKER_SLOT_ENV } from "./messages.ts";

/** This process's slot (1..N) when it is one of `server.workers`' processes; undefined otherwise. */
export function workerSlot(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const slot = Number(env[WORKER_SLOT_ENV]);
  return Number.isInteger(slot) && slot > 0 ? slot : undefined;
}

/**
 * Tells the supervisor this worker serves on `ports`, and from then on answers
 * its requests for this worker's metrics (the supervisor serves /metrics for all).
 */
export function reportToSupervisor(ports: { grpcPort: number; httpPort: number | undefined }, prometheus: PrometheusExporter | undefined): void {
  const worker = cluster.worker;
  if (!worker) return;
  worker.on("message", (m: unknown) => {
    if (!isMessage<MetricsRequest>(m, "qingyu:metrics?")) return;
    void metricsText(prometheus).then(
      (text) => worker.send({ type: "qingyu:metrics", id: m.id, text } satisfies MetricsReply),
      (err: unknown) => worker.send({ type: "qingyu:metrics", id: m.id, text: `# metrics of this worker failed: ${String(err)}\n` } satisfies MetricsReply),
    );
  });
  worker.send({ type: "qingyu:listening", ...ports } satisfies ListeningMessage);
}

async function metricsText(prometheus: PrometheusExporter | undefined): Promise<string> {
  if (!prometheus) return "";
  const { PrometheusSerializer } = await import("@opentelemetry/exporter-prometheus");
  const { resourceMetrics } = await prometheus.collect();
  return new PrometheusSerializer().serialize(resourceMetrics);
}
