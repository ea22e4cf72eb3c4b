import { describe, expect, it } from "vitest";
import { bindFailure } from "../../src/cli/bind-error.ts";

const server = { host: "127.0.0.1", port: 50051, httpPort: 8080, metricsPort: 9464 };

/** A listen error as node:net makes it. */
function listenError(code: string, port: number): Error {
  return Object.assign(new Error(`listen ${code}: address already in use 127.0.0.1:${port}`), {
    code,
    errno: -98,
    syscall: "listen",
    address: "127.0.0.1",
    port,
  });
}

describe("bindFailure", () => {
  it("a port in use names the port, which one it is, and the flag, variable and key that set it", () => {
    expect(bindFailure(listenError("EADDRINUSE", 50051), server)).toBe(
      "port 50051 (gRPC) is already in use on 127.0.0.1: stop what holds it, or choose another with --port, PORT or server.port",
    );
    expect(bindFailure(listenError("EADDRINUSE", 8080), server)).toBe(
      "port 8080 (HTTP) is already in use on 127.0.0.1: stop what holds it, or choose another with --http-port, HTTP_PORT or server.httpPort",
    );
    expect(bindFailure(listenError("EADDRINUSE", 9464), server)).toBe(
      "port 9464 (metrics) is already in use on 127.0.0.1: stop what holds it, or choose another with server.metricsPort",
    );
  });

  it("reads the port from grpc-js's wrapped message when the error carries none", () => {
    const wrapped = new Error("No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 127.0.0.1:50051]");
    expect(bindFailure(wrapped, server)).toMatch(/^port 50051 \(gRPC\) is already in use/);
  });

  it("a privileged port and an address this machine does not have say so", () => {
    expect(bindFailure(listenError("EACCES", 80), { ...server, port: 80 })).toBe(
      "port 80 (gRPC) cannot be bound on 127.0.0.1: permission denied (ports below 1024 need privileges); choose another with --port, PORT or server.port",
    );
    expect(bindFailure(listenError("EADDRNOTAVAIL", 8080), { ...server, host: "10.9.9.9" })).toBe(
      "server.host 10.9.9.9 is not an address of this machine (binding port 8080 (HTTP)): set it to one of its addresses, 127.0.0.1 or 0.0.0.0",
    );
  });

  it("leaves any other failure alone", () => {
    expect(bindFailure(new Error("cannot open the postgres session store"), server)).toBeUndefined();
  });
});
