import type { RunLog } from "./run-log.ts";

/**
 * Who waits here for a run to be launched on this replica: watchers that
 * followed a run through its parking get its live log (its text deltas) once
 * a decision or an answer on this replica takes it over.
 */
export class Launches {
  private readonly listeners = new Map<string, Set<(log: RunLog) => void>>();

  /** Calls `listener` with the run's log when it is launched here; returns the removal. */
  listen(runId: string, listener: (log: RunLog) => void): () => void {
    let listeners = this.listeners.get(runId);
    if (!listeners) this.listeners.set(runId, (listeners = new Set()));
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (!listeners.size && this.listeners.get(runId) === listeners) this.listeners.delete(runId);
    };
  }

  /** The run was launched here with `log`: its listeners are told, once. */
  launched(runId: string, log: RunLog): void {
    const listeners = this.listeners.get(runId);
    this.listeners.delete(runId);
    for (const listener of listeners ?? []) listener(log);
  }
}
