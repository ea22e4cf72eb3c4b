import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { CallTracker } from "./call-tracker.ts";
import { toGrpcService } from "./grpc-adapter.ts";
import { addReflection } from "./reflection.ts";
import type { HostedService } from "./types.ts";

/** The gRPC port: grpc-js, for backends' traffic. */
export class GrpcTransport {
  private readonly server = new grpc.Server({
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
  });

  constructor(services: readonly HostedService[], tracker: CallTracker, log: Logger) {
    for (const hostedService of services) {
      const { definition, handlers } = toGrpcService(hostedService, tracker, log);
      this.server.addService(definition, handlers);
    }
    addReflection(this.server, services);
  }

  /** Binds and returns the port (the chosen one when `port` is 0). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
        err ? reject(err) : resolve(bound),
      );
    });
  }

  /** Stops accepting connections and lets calls finish; forces after `timeoutMs`. */
  close(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, timeoutMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
