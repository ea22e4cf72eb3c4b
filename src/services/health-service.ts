import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../gen/grpc/health/v1/health_pb.ts";
import { Code, ConnectError, abortReason } from "../errors.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { Wakeup } from "./wakeup.ts";

/** Serving status per service name; "" is the whole server. */
export class HealthState {
  private readonly statuses = new Map<string, Status>();
  private readonly watchers = new Set<() => void>();

  constructor(services: readonly string[]) {
    for (const name of ["", ...services]) this.statuses.set(name, Status.SERVING);
  }

  /** Marks every service NOT_SERVING (shutdown) or SERVING. */
  setAll(serving: boolean): void {
    for (const name of this.statuses.keys()) this.statuses.set(name, serving ? Status.SERVING : Status.NOT_SERVING);
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
      if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
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
