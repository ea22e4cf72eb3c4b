import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { CallTracker } from "./call-tracker.ts";
import { registerConnectServices } from "./connect-adapter.ts";
import type { HostedService } from "./types.ts";

/** The HTTP port: connect-node, for the Connect protocol (curl, JSON) and gRPC-Web (browsers). */
export class HttpTransport {
  private readonly server: Server;

  constructor(services: readonly HostedService[], tracker: CallTracker, log: Logger) {
    const handler = connectNodeAdapter({
      routes: (router) => registerConnectServices(router, services, tracker, log),
      readMaxBytes: 4 * 1024 * 1024,
    });
    this.server = createServer(handler);
  }

  /** Binds and returns the port (the chosen one when `port` is 0). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /** Stops accepting connections, waits for open requests, then drops idle keep-alive sockets. */
  close(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.server.closeAllConnections();
        resolve();
      }, timeoutMs);
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }
}
