import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { ServerLimits } from "../config/schema.ts";
import type { CallTracker } from "./call-tracker.ts";
import { toGrpcService } from "./grpc-adapter.ts";
import { addReflection } from "./reflection.ts";
import type { TlsMaterial } from "./tls.ts";
import type { HostedService } from "./types.ts";

/** What both ports are served with, from `server.limits` and `server.tls`. */
export interface TransportOptions {
  limits: ServerLimits;
  tls?: TlsMaterial;
}

/**
 * grpc-js server options for the limits. grpc-js (1.14) has no option for the
 * metadata size (the adapter checks it) nor for the client ping policy (it
 * accepts any keepalive pings).
 */
export function grpcServerOptions(limits: ServerLimits): grpc.ServerOptions {
  return {
    // Both are checked on the decompressed message.
    "grpc.max_receive_message_length": limits.maxMessageBytes,
    "grpc.max_send_message_length": limits.maxMessageBytes,
    "grpc.max_concurrent_streams": limits.maxConcurrentStreams,
    "grpc.keepalive_time_ms": limits.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": limits.keepaliveTimeoutMs,
    "grpc.max_connection_idle_ms": limits.maxConnectionIdleMs,
    "grpc.max_connection_age_ms": limits.maxConnectionAgeMs,
    // By default a call within maxDeadlineMs is never cut by a connection's age.
    "grpc.max_connection_age_grace_ms": limits.maxConnectionAgeGraceMs ?? limits.maxDeadlineMs,
  };
}

function credentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  // Without a clientCa, an empty CA list rather than none: given none, Deno's TLS server
  // sends its whole root store in the certificate chain, which clients reject as too large.
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? Buffer.alloc(0), [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
}

/** The gRPC port: grpc-js, for backends' traffic. */
export class GrpcTransport {
  private readonly server: grpc.Server;

  constructor(
    services: readonly HostedService[],
    tracker: CallTracker,
    log: Logger,
    private readonly options: TransportOptions,
  ) {
    this.server = new grpc.Server(grpcServerOptions(options.limits));
    for (const hostedService of services) {
      const { definition, handlers } = toGrpcService(hostedService, tracker, log, options.limits);
      this.server.addService(definition, handlers);
    }
    addReflection(this.server, services);
  }

  /** Binds and returns the port (the chosen one when `port` is 0). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, credentials(this.options.tls), (err, bound) =>
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
