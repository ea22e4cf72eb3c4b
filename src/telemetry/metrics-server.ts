import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { PrometheusExporter } from "@opentelemetry/exporter-prometheus";

/** Answers one GET /metrics. */
export type MetricsHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The handler serving one process's metrics from its Prometheus exporter. */
export function exporterHandler(exporter: PrometheusExporter): MetricsHandler {
  return (req, res) => exporter.getMetricsRequestHandler(req, res);
}

/**
 * The admin port: GET /metrics in the Prometheus text format, nothing else.
 * Kept apart from the API ports so it can stay inside the cluster network.
 * One process's exporter serves it, or, with server.workers, the supervisor
 * gathering every worker's.
 */
export class MetricsServer {
  private readonly server: Server;

  constructor(handler: MetricsHandler) {
    this.server = createServer((req, res) => {
      if (req.method === "GET" && (req.url === "/metrics" || req.url?.startsWith("/metrics?"))) {
        handler(req, res);
        return;
      }
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at GET /metrics\n");
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
