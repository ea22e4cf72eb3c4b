import type { Logger } from "pino";
import { failureDetail } from "../clients/shared.ts";
import type { HealthState } from "../services/health-service.ts";
import type { SessionStore } from "./types.ts";

const DEPENDENCY = "session-store";

/**
 * Pings the session store on an interval and reports it to health: readiness
 * turns NOT_SERVING while the store cannot be reached, and SERVING again when
 * it answers, with no restart. Calls in the meantime fail fast on their own.
 */
export class StoreMonitor {
  private timer: NodeJS.Timeout | undefined;
  private up = true;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: SessionStore,
    private readonly health: HealthState,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  /** Checks once now, then every interval. */
  start(): Promise<void> {
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
    return this.check();
  }

  /** One ping; overlapping checks share the one in flight. */
  check(): Promise<void> {
    this.running ??= this.store
      .ping()
      .then(
        () => this.report(true),
        (err: unknown) => this.report(false, err),
      )
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private report(up: boolean, err?: unknown): void {
    if (up !== this.up) {
      if (up) this.log.info("session store reachable again; serving");
      else this.log.error({ err: failureDetail(err) }, "session store unreachable; health is NOT_SERVING until it answers");
    }
    this.up = up;
    this.health.setDependency(DEPENDENCY, up);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
