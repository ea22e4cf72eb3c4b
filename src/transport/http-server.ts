import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createServer, type Server } from "node:http";
import { createSecureServer, type Http2SecureServer, type Http2Session } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { Logger } from "pino";
import type { CallTracker } from "./call-tracker.ts";
import { reportBinaryParseErrorsAsInvalid } from "./binary-parse-status.ts";
import { registerConnectServices } from "./connect-adapter.ts";
import { nodeRequestValues } from "./stalled-stream.ts";
import { guardRequests } from "./preflight.ts";
import { SseStreams } from "./sse.ts";
import { ConnectStreams } from "./connect-stream.ts";
import { ConnectUnary } from "./connect-unary.ts";
import type { TransportOptions } from "./grpc-server.ts";
import type { HostedService } from "./types.ts";

/**
 * The HTTP port: connect-node, for the Connect protocol (curl, JSON) and
 * gRPC-Web (browsers); and ExecuteStream as Server-Sent Events (sse.ts).
 * Plain HTTP/1.1 without TLS (what curl and browsers speak unencrypted);
 * with TLS, HTTP/2 negotiated by ALPN and HTTP/1.1 for clients that do not offer it.
 */
export class HttpTransport {
  private readonly server: Server | Http2SecureServer;
  // TLS only: HTTP/2 sessions to send GOAWAY at close, and every socket to destroy when the grace is over.
  private readonly sessions = new Set<Http2Session>();
  private readonly sockets = new Set<Socket>();

  private readonly log: Logger;

  constructor(services: readonly HostedService[], tracker: CallTracker, log: Logger, { limits, tls, admit, edge }: TransportOptions) {
    this.log = log;
    const connect = connectNodeAdapter({
      routes: (router) => {
        registerConnectServices(router, services, tracker, edge, limits);
        // Admission and map bounds before connect-node decodes a body; then parse errors worded as on the gRPC port.
        guardRequests(router.handlers, { admit, limits, edge });
        reportBinaryParseErrorsAsInvalid(router.handlers);
      },
      // connect-node checks these on each message after decompression too.
      readMaxBytes: limits.maxMessageBytes,
      writeMaxBytes: limits.maxMessageBytes,
      // Each call's Node request, so a stream stuck on a client that does not read can be reset.
      contextValues: nodeRequestValues,
    });
    // The Server-Sent Events form of ExecuteStream: same path, for clients that accept text/event-stream.
    const sse = new SseStreams(services, tracker, { limits, admit, edge });
    // Connect streaming calls, the common (uncompressed) case: served without connect-node's pipeline.
    const streams = new ConnectStreams(services, tracker, { limits, admit, edge });
    // And Connect unary calls, the common case (a POST, not compressed).
    const unary = new ConnectUnary(services, tracker, { limits, admit, edge });
    const handler: typeof connect = (req, res) => {
      if (sse.handles(req)) return void sse.serve(req, res as never);
      if (streams.handles(req)) return void streams.serve(req, res as never);
      if (unary.handles(req)) return void unary.serve(req, res as never);
      return connect(req, res);
    };
    if (!tls) {
      // Node answers 431 to a request head larger than maxHeaderSize, before any handler runs.
      this.server = createServer({ maxHeaderSize: limits.maxMetadataBytes }, handler);
      // Node closes a connection accepted beyond this at once.
      this.server.maxConnections = limits.maxConnections;
      return;
    }
    const server = createSecureServer(
      {
        cert: tls.cert,
        key: tls.key,
        ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
        allowHTTP1: true,
        settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxMetadataBytes },
      },
      handler,
    );
    server.on("session", (session: Http2Session) => {
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
    });
    server.on("secureConnection", (socket: Socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
      // A failed or reset TLS connection must not become an uncaught error.
      socket.on("error", () => undefined);
    });
    server.maxConnections = limits.maxConnections;
    this.server = server;
  }

  /** Binds and returns the port (the chosen one when `port` is 0). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        // An accept that fails (EMFILE: out of file descriptors) is an 'error' event; unheard, it would end the process.
        this.server.on("error", (err) => this.log.warn({ err }, "HTTP port: could not accept a connection"));
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /** Stops accepting connections, waits for open requests, then drops idle keep-alive sockets. */
  close(timeoutMs: number): Promise<void> {
    const server = this.server;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if ("closeAllConnections" in server) server.closeAllConnections();
        for (const socket of this.sockets) socket.destroy();
        resolve();
      }, timeoutMs);
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      // HTTP/2: GOAWAY, so the session closes once its open streams are done.
      for (const session of this.sessions) session.close();
      // HTTP/1.1 keep-alive sockets with no request (Node 20 has this on the TLS server too, for allowHTTP1).
      (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
    });
  }
}
