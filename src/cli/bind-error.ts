import type { Config } from "../config/schema.ts";

// Each port the server binds, and what sets it: the message says what to change.
const PORTS = [
  { key: "port", name: "gRPC", setBy: "--port, PORT or server.port" },
  { key: "httpPort", name: "HTTP", setBy: "--http-port, HTTP_PORT or server.httpPort" },
  { key: "metricsPort", name: "metrics", setBy: "server.metricsPort" },
] as const;

const CODES = ["EADDRINUSE", "EACCES", "EADDRNOTAVAIL"] as const;

/**
 * One line for a port that could not be bound (in use, privileged, or an
 * address this machine does not have), naming the port and the flag, variable
 * and key that set it; undefined for any other failure. The listen error's own
 * text is a stack a newcomer cannot act on.
 */
export function bindFailure(err: unknown, server: Pick<Config["server"], "host" | "port" | "httpPort" | "metricsPort">): string | undefined {
  const text = err instanceof Error ? err.message : String(err);
  const own = (err as { code?: unknown } | null)?.code;
  // grpc-js binding a port itself (Deno) wraps the listen error in its own message.
  const code = CODES.find((c) => c === own) ?? CODES.find((c) => text.includes(c));
  if (!code) return undefined;
  const given = (err as { port?: unknown } | null)?.port;
  const port = typeof given === "number" ? given : Number(/:(\d+)(?!.*:\d)/.exec(text)?.[1] ?? NaN);
  const which = PORTS.find((p) => server[p.key] === port);
  const named = which ? `port ${port} (${which.name})` : `port ${Number.isNaN(port) ? "?" : port}`;
  const change = which ? `choose another with ${which.setBy}` : "choose other ports";
  if (code === "EADDRINUSE") return `${named} is already in use on ${server.host}: stop what holds it, or ${change}`;
  if (code === "EACCES") return `${named} cannot be bound on ${server.host}: permission denied (ports below 1024 need privileges); ${change}`;
  return `server.host ${server.host} is not an address of this machine (binding ${named}): set it to one of its addresses, 127.0.0.1 or 0.0.0.0`;
}
