import { availableParallelism } from "node:os";

/** How many server processes `server.workers` asks for ("auto": one per core this process may use). */
export function workerCount(setting: number | "auto", cores: number = availableParallelism()): number {
  return setting === "auto" ? Math.max(1, cores) : setting;
}

/** The parts of a config the workers rule reads. */
interface WorkersView {
  server: { workers: number | "auto" };
  sessions: { store: string };
  events: { bus: string };
  runs: { store: string };
}

/**
 * What more than one worker cannot share when it lives in one process's
 * memory: each worker would see its own sessions, runs or events, and a caller
 * would find them or not by which worker its connection reached.
 */
export function workerProblems(config: WorkersView, cores?: number): { path: string[]; message: string }[] {
  const n = workerCount(config.server.workers, cores);
  if (n <= 1) return [];
  const problems: { path: string[]; message: string }[] = [];
  const why = `with server.workers: ${config.server.workers === "auto" ? `auto (${n})` : n}`;
  if (config.sessions.store === "memory")
    problems.push({
      path: ["sessions", "store"],
      message: `memory keeps sessions in each worker's own memory ${why}: set redis, postgres or redis+postgres (a store every worker shares), or run one worker`,
    });
  if (config.events.bus === "memory")
    problems.push({
      path: ["events", "bus"],
      message: `memory gives each worker's subscribers only that worker's events ${why}: set events.bus: redis, or run one worker`,
    });
  // runs.store auto without PostgreSQL is memory too; RunService then refuses runs (RunManager) rather than the config
  // failing for everyone who never starts one.
  if (config.runs.store === "memory")
    problems.push({
      path: ["runs", "store"],
      message: `memory keeps durable runs in each worker's own memory ${why}: set runs.store: postgres, or run one worker`,
    });
  return problems;
}
