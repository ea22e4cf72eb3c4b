// The one place that touches the host runtime's process API (Node and Deno both provide node:process).
import process from "node:process";

/** "deno" or "node", for logs. */
export const runtimeName: string = "Deno" in globalThis ? "deno" : "node";

/**
 * Whether grpc-js drains connections handed to it by createConnectionInjector
 * gracefully at shutdown. Deno 2's node:http2 resets their streams in flight
 * instead (test/e2e/lifecycle.e2e "drains on SIGTERM"), so there the gRPC port
 * is bound by grpc-js itself, without a connection cap.
 */
export const injectedConnectionsDrain: boolean = runtimeName === "node";

/** Runs `handler` on the first SIGTERM or SIGINT; a second one exits at once. */
export function onShutdownSignal(handler: (signal: string) => void): void {
  let received = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (received) process.exit(130);
      received = true;
      handler(signal);
    });
  }
}

/** Runs `handler` synchronously when the process exits, however it exits. */
export function onExit(handler: () => void): void {
  process.on("exit", handler);
}

export function exit(code: number): never {
  process.exit(code);
}

export const argv: readonly string[] = process.argv.slice(2);
export const env: Readonly<Record<string, string | undefined>> = process.env;

/** Runs `handler` on every SIGHUP (the conventional "reload your config" signal). */
export function onReloadSignal(handler: () => void): void {
  process.on("SIGHUP", handler);
}

/**
 * Runs `handler` for a promise rejection nobody handled, instead of the
 * default (the process exits): one plugin's forgotten promise must not drop
 * every call in flight.
 */
export function onUnhandledRejection(handler: (reason: unknown) => void): void {
  process.on("unhandledRejection", handler);
}
