import * as grpc from "@grpc/grpc-js";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { ServerLimits } from "../config/schema.ts";
import type { CallTracker } from "./call-tracker.ts";
import type { ErrorEdge } from "./edge-error.ts";
import { toGrpcService } from "./grpc-adapter.ts";
import type { Admit } from "./preflight.ts";
import { injectedConnectionsDrain } from "../runtime/process.ts";
import { addReflection } from "./reflection.ts";
import type { TlsMaterial } from "./tls.ts";
import type { HostedService } from "./types.ts";

/** What both ports are served with, from `server.limits`, `server.tls` and `server.reflection`. */
export interface TransportOptions {
  limits: ServerLimits;
  tls?: TlsMaterial;
  /** The pipeline's admit hooks, run on each call's headers before its request is decoded. */
  admit?: Admit;
  /** gRPC port: serve server reflection (default true). */
  reflection?: boolean;
  /** The server's one mapping of failures to statuses (shared by both ports: one outage log). */
  edge: ErrorEdge;
}

/**
 * grpc-js server options for the limits. grpc-js (1.14) has no option for the
 * metadata size (the adapter checks it) nor for the client ping policy (it
 * accepts any keepalive pings).
 */
function grpcServerOptions(limits: ServerLimits): grpc.ServerOptions {
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

/**
 * The gRPC port: grpc-js, for backends' traffic. grpc-js has no connection
 * cap, so on Node the listening socket is ours (a net.Server with
 * maxConnections) and each accepted connection is handed to grpc-js, which does
 * TLS and HTTP/2 on it. On Deno grpc-js binds it (see injectedConnectionsDrain).
 */
export class GrpcTransport {
  private readonly server: grpc.Server;
  // Ours where grpc-js drains injected connections (Node); otherwise grpc-js binds the port itself.
  private listener: Server | undefined;
  // Every accepted socket, to destroy when the grace is over (a TLS handshake grpc-js has no session for yet, too).
  private readonly sockets = new Set<Socket>();

  constructor(
    services: readonly HostedService[],
    tracker: CallTracker,
    private readonly log: Logger,
    private readonly options: TransportOptions,
  ) {
    this.server = new grpc.Server(grpcServerOptions(options.limits));
    for (const hostedService of services) {
      const { definition, handlers } = toGrpcService(hostedService, tracker, options.edge, options.limits, options.admit);
      this.server.addService(definition, handlers);
    }
    if (options.reflection !== false) addReflection(this.server, services);
    if (!injectedConnectionsDrain) return;
    const injector = this.server.createConnectionInjector(credentials(options.tls));
    this.listener = createServer({ noDelay: true }, (socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
      // A reset connection must not become an uncaught error; grpc-js sees the close.
      socket.on("error", () => undefined);
      injector.injectConnection(socket);
    });
    // Node closes a connection accepted beyond this at once.
    this.listener.maxConnections = options.limits.maxConnections;
  }

  /** Binds and returns the port (the chosen one when `port` is 0). */
  listen(host: string, port: number): Promise<number> {
    const listener = this.listener;
    if (!listener) {
      return new Promise((resolve, reject) =>
        this.server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, credentials(this.options.tls), (err, bound) =>
          err ? reject(err) : resolve(bound),
        ),
      );
    }
    return new Promise((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(port, host, () => {
        listener.off("error", reject);
        // An accept that fails (EMFILE: out of file descriptors) is an 'error' event; unheard, it would end the process.
        listener.on("error", (err) => this.log.warn({ err }, "gRPC port: could not accept a connection"));
        resolve((listener.address() as AddressInfo).port);
      });
    });
  }

  /** Stops accepting connections and lets calls finish; forces after `timeoutMs`. */
  close(timeoutMs: number): Promise<void> {
    this.listener?.close();
    let timer: NodeJS.Timeout | undefined;
    const forced = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, timeoutMs);
    });
    // Under Node 24+ grpc-js's tryShutdown reports injected connections closed at once, before a
    // finished call's last frames have left (test/e2e/lifecycle "drains on SIGTERM" then sees the
    // connection dropped): wait for the sockets too, within the same bound.
    const drained = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve())).then(() => this.socketsClosed());
    return Promise.race([drained, forced]).finally(() => {
      clearTimeout(timer);
      for (const socket of this.sockets) socket.destroy();
    });
  }

  /** Resolves once every injected connection has closed (the client's, after its calls end and it reads the GOAWAY). */
  private async socketsClosed(): Promise<void> {
    for (const socket of this.sockets) {
      if (!socket.destroyed) await new Promise((resolve) => socket.once("close", resolve));
    }
  }
}
