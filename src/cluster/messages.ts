// What the supervisor and its workers say to each other over the cluster's IPC channel.

/** A worker is serving, on these ports. */
export interface ListeningMessage {
  type: "qingyu:listening";
  grpcPort: number;
  httpPort: number | undefined;
}

/** The supervisor asks a worker for its metrics (Prometheus text). */
export interface MetricsRequest {
  type: "qingyu:metrics?";
  id: number;
}

/** A worker's metrics, answering the request with the same id. */
export interface MetricsReply {
  type: "qingyu:metrics";
  id: number;
  text: string;
}

/** The environment variable that tells a worker its slot (1..N): stable across restarts, unlike cluster's worker ids. */
export const WORKER_SLOT_ENV = "QINGYU_WORKER_SLOT";

/** Whether `m` is a message of ours of type `type`. */
export function isMessage<T extends { type: string }>(m: unknown, type: T["type"]): m is T {
  return typeof m === "object" && m !== null && (m as { type?: unknown }).type === type;
}
