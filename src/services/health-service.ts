import { Code, ConnectError } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { Health, HealthCheckResponse_ServingStatus as Status, HealthCheckResponseSchema, HealthListResponseSchema } from "../gen/grpc/health/v1/health_pb.ts";
import { abortReason } from "../errors.ts";
import { quote } from "../quote.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { Wakeup } from "./wakeup.ts";

/**
 * Serving status per service name; "" is the whole server. Everything is
 * NOT_SERVING while the server drains, or while a dependency every call needs
 * (the session store) is down, so load balancers route elsewhere.
 */
export class HealthState {
  private readonly statuses = new Map<string, Status>();
  private readonly watchers = new Set<() => void>();
  private draining = false;
  private readonly down = new Set<string>();

  constructor(services: readonly string[]) {
    for (const name of ["", ...services]) this.statuses.set(name, Status.SERVING);
  }

  /** Marks every service NOT_SERVING (shutdown) or SERVING. */
  setAll(serving: boolean): void {
    this.draining = !serving;
    this.update();
  }

  /** Records that a dependency is up or down; any one down makes the server NOT_SERVING. */
  setDependency(name: string, up: boolean): void {
    if (up) this.down.delete(name);
    else this.down.add(name);
    this.update();
  }

  private update(): void {
    const status = this.draining || this.down.size > 0 ? Status.NOT_SERVING : Status.SERVING;
    if ([...this.statuses.values()].every((s) => s === status)) return;
    for (const name of this.statuses.keys()) this.statuses.set(name, status);
    for (const wake of this.watchers) wake();
  }

  get(service: string): Status | undefined {
    return this.statuses.get(service);
  }

  all(): ReadonlyMap<string, Status> {
    return this.statuses;
  }

  /** Calls `wake` on every change until the returned function is called. */
  onChange(wake: () => void): () => void {
    this.watchers.add(wake);
    return () => void this.watchers.delete(wake);
  }
}

/** grpc.health.v1.Health, on both ports. */
export function healthService(state: HealthState): ServiceImpl<typeof Health.method> {
  return {
    async check(req) {
      const status = state.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service ${quote(req.service)}`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status });
    },

    async list() {
      return create(HealthListResponseSchema, {
        statuses: Object.fromEntries([...state.all()].map(([name, status]) => [name, create(HealthCheckResponseSchema, { status })])),
      });
    },

    async *watch(req, call) {
      let last: Status | undefined;
      const wakeup = new Wakeup(call.signal);
      const stop = state.onChange(() => wakeup.wake());
      try {
        for (;;) {
          const status = state.get(req.service) ?? Status.SERVICE_UNKNOWN;
          if (status !== last) {
            last = status;
            yield create(HealthCheckResponseSchema, { status });
          }
          if (call.signal.aborted) throw abortReason(call.signal);
          await wakeup.wait();
        }
      } finally {
        stop();
      }
    },
  };
}
