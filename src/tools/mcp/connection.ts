import { isAbsolute, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/client";
import type { Logger } from "pino";
import type { McpServerConfig } from "./config.ts";
import { WatchedHttpTransport } from "./http-transport.ts";
import { ProcessGroupStdioTransport } from "./stdio-transport.ts";

/** How long dispose waits for a streamable HTTP server to end its session before giving up on it. */
const TERMINATE_SESSION_MS = 1000;

/** One initialised MCP session: a client over its transport. */
export interface McpConnection {
  readonly client: Client;
  readonly transport: ProcessGroupStdioTransport | WatchedHttpTransport;
  /** Set when we close it on purpose (dispose, replacing a stale HTTP session): its end is no news. */
  retiring: boolean;
  /** Set when a lost HTTP session is replaced: requests still on it are sent again on the new one. */
  replaced: boolean;
}

/** Where to find a server and what it runs with. */
export interface ConnectPlace {
  readonly baseDir: string;
  readonly log: Logger;
}

/** The transport a server's config asks for; relative paths are from `baseDir`. */
function makeTransport(config: McpServerConfig, place: ConnectPlace): ProcessGroupStdioTransport | WatchedHttpTransport {
  if (config.url !== undefined) return new WatchedHttpTransport(new URL(config.url), config.headers ?? {});
  const command = config.command!;
  // A bare name ("npx") is looked up on PATH; a path ("./bin/server") is the config's, not the process's.
  const isPath = command.includes("/") || command.includes("\\");
  return new ProcessGroupStdioTransport(
    {
      command: isPath && !isAbsolute(command) ? resolve(place.baseDir, command) : command,
      args: config.args ?? [],
      env: config.env ?? {},
      cwd: resolve(place.baseDir, config.cwd ?? "."),
    },
    place.log,
  );
}

/**
 * Starts the transport and runs MCP's initialize handshake (within
 * `timeoutMs`); `onClosed` hears when the connection ends for any reason.
 * A handshake that fails leaves nothing running.
 */
export async function openConnection(
  config: McpServerConfig,
  place: ConnectPlace,
  onClosed: (connection: McpConnection) => void,
  track: (connection: McpConnection) => void,
): Promise<McpConnection> {
  const transport = makeTransport(config, place);
  // The default version negotiation ("legacy"): the 2025 initialize handshake every MCP server answers.
  const client = new Client({ name: "qingyu-agent-runtime", version: "1" }, { capabilities: {} });
  const connection: McpConnection = { client, transport, retiring: false, replaced: false };
  client.onclose = () => onClosed(connection);
  // Out-of-band noise (an SSE stream that broke, a stray stdout line); a call's own failure reaches the call.
  client.onerror = (err) => place.log.debug({ err }, "MCP transport reported an error");
  track(connection);
  try {
    await client.connect(transport, { timeout: config.timeoutMs });
  } catch (err) {
    // Read before closing: a server we kill for not answering did not end by itself.
    const ended = transport instanceof ProcessGroupStdioTransport ? transport.exitDescription : undefined;
    await closeConnection(connection, false);
    if (ended !== undefined && transport instanceof ProcessGroupStdioTransport) {
      const said = transport.stderrTail.split("\n").filter(Boolean).at(-1);
      throw new Error(`the server ended during start-up (${ended})${said ? `; its last words: ${said}` : ""}`);
    }
    throw err;
  }
  return connection;
}

/** Closes a connection on purpose: a stdio server's process group is killed; `endSession` also ends an HTTP session. */
export async function closeConnection(connection: McpConnection, endSession: boolean): Promise<void> {
  connection.retiring = true;
  const { client, transport } = connection;
  if (endSession && transport instanceof WatchedHttpTransport && transport.sessionId !== undefined) {
    const bound = new Promise<void>((done) => setTimeout(done, TERMINATE_SESSION_MS).unref());
    await Promise.race([transport.terminateSession().catch(() => undefined), bound]);
  }
  await client.close().catch(() => undefined);
  // A transport the client never reached (a failed start) is closed here; closing twice is harmless.
  await transport.close().catch(() => undefined);
}
