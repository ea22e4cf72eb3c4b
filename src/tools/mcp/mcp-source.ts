import { SdkError, SdkErrorCode, SdkHttpError, type CallToolResult, type Tool as McpTool } from "@modelcontextprotocol/client";
import { Code, ConnectError, ToolError, type JsonObject, type Tool, type ToolContext, type ToolSource } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import { untilAborted } from "../../abort.ts";
import type { McpServerConfig } from "./config.ts";
import { closeConnection, openConnection, type McpConnection } from "./connection.ts";
import { matchesAny } from "../glob.ts";
import { ProcessGroupStdioTransport } from "./stdio-transport.ts";
import { resultText } from "./result.ts";
import { isToolName } from "../tool-name.ts";

/** The shared connection: its opening, and the connection once open. */
interface Slot {
  readonly opening: Promise<McpConnection>;
  connection?: McpConnection;
}

/** What an McpToolSource needs from the host. */
export interface McpSourceDeps {
  log: Logger;
  /** The config file's folder: a relative `command` or `cwd` is resolved from it. */
  baseDir: string;
}

/**
 * The tools of one MCP server, named `<serverName>__<tool>`. One connection
 * per source, opened on first use and shared by every call; a stdio server
 * that exits is started again on the next call, a streamable HTTP session the
 * server has forgotten is initialised again once.
 */
export class McpToolSource implements ToolSource {
  readonly #log: Logger;
  readonly #allowed: (name: string) => boolean;
  readonly #markedIdempotent: (name: string) => boolean;
  /** The connection calls share (once open), or its opening; undefined until first use and after it ends. */
  #current: Slot | undefined;
  /** Every connection not yet closed, the opening ones too: dispose ends them all. */
  readonly #live = new Set<McpConnection>();
  #disposed: Promise<void> | undefined;

  constructor(
    readonly serverName: string,
    private readonly config: McpServerConfig,
    private readonly deps: McpSourceDeps,
  ) {
    this.#log = deps.log.child({ mcpServer: serverName });
    const { allow, idempotent = [] } = config;
    this.#allowed = allow ? (name) => matchesAny(allow, name) : () => true;
    this.#markedIdempotent = (name) => matchesAny(idempotent, name);
  }

  async list(signal: AbortSignal): Promise<readonly Tool[]> {
    let listed: McpTool[];
    try {
      ({ tools: listed } = await this.#withConnection(signal, (c) => c.client.listTools(undefined, { signal, timeout: this.config.timeoutMs })));
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new ConnectError(`MCP server "${this.serverName}" could not list its tools: ${describe(err, this.config.timeoutMs)}`, Code.Unavailable);
    }
    const tools: Tool[] = [];
    for (const tool of listed) {
      if (!this.#allowed(tool.name)) continue;
      const name = `${this.serverName}__${tool.name}`;
      if (!isToolName(name)) {
        this.#log.warn({ tool: tool.name, name }, "MCP tool skipped: its name is not [A-Za-z0-9_-]{1,64}, which model APIs require");
        continue;
      }
      tools.push(this.#tool(name, tool));
    }
    return tools;
  }

  /** Closes the connection (a stdio server's whole process group is killed). Later calls fail. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      this.#current = undefined;
      await Promise.all([...this.#live].map((c) => closeConnection(c, true)));
      this.#live.clear();
    })();
    return this.#disposed;
  }

  #tool(name: string, tool: McpTool): Tool {
    const { timeoutMs } = this.config;
    return {
      name,
      description: tool.description ?? tool.title ?? "",
      inputSchema: (tool.inputSchema ?? { type: "object" }) as JsonObject,
      ...(tool.outputSchema ? { outputSchema: tool.outputSchema as JsonObject } : {}),
      idempotent: this.#markedIdempotent(tool.name) || tool.annotations?.idempotentHint === true,
      timeoutMs,
      execute: (args, ctx) => this.#call(tool.name, args, ctx),
    };
  }

  async #call(toolName: string, args: unknown, ctx: ToolContext): Promise<string> {
    let result: CallToolResult;
    try {
      result = await this.#withConnection(ctx.signal, (c) =>
        c.client.callTool(
          { name: toolName, arguments: (args ?? {}) as Record<string, unknown> },
          {
            // Aborting it sends notifications/cancelled to the server.
            signal: ctx.signal,
            timeout: this.config.timeoutMs,
            resetTimeoutOnProgress: true,
            onprogress: (p) => ctx.progress(p.message ?? "", p.progress, p.total),
          },
        ),
      );
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      throw new ToolError(`MCP server "${this.serverName}" (tool ${toolName}): ${describe(err, this.config.timeoutMs)}`);
    }
    const text = resultText(result);
    if (result.isError) throw new ToolError(text);
    return text;
  }

  /**
   * Runs `work` on the shared connection. A streamable HTTP server that
   * answers 404 has lost our session (it restarted): that request never ran,
   * so it is sent once more on a new session (typescript-sdk #1708).
   */
  async #withConnection<T>(signal: AbortSignal, work: (connection: McpConnection) => Promise<T>): Promise<T> {
    const connection = await untilAborted(this.#connection(), signal);
    try {
      return await work(connection);
    } catch (err) {
      if (signal.aborted) throw err;
      const lostSession = err instanceof SdkHttpError && err.status === 404;
      // Another call found the session lost and closed this connection under this one, whose request met the same fate.
      if (lostSession || (connection.replaced && !this.#disposed)) {
        if (lostSession) this.#log.info("MCP server no longer knows our session (it restarted?); initialising a new one");
        this.#retire(connection);
        return work(await untilAborted(this.#connection(), signal));
      }
      const { transport } = connection;
      if (
        err instanceof SdkError &&
        err.code === SdkErrorCode.ConnectionClosed &&
        transport instanceof ProcessGroupStdioTransport &&
        transport.exitDescription
      ) {
        throw new Error(`the server exited during the call (${transport.exitDescription})`);
      }
      throw err;
    }
  }

  #connection(): Promise<McpConnection> {
    if (this.#disposed) return Promise.reject(new Error("the MCP tool source is shut down"));
    if (!this.#current) {
      const opening = openConnection(
        this.config,
        { baseDir: this.deps.baseDir, log: this.#log },
        (c) => this.#closed(c),
        (c) => this.#live.add(c),
      );
      const slot: Slot = { opening };
      this.#current = slot;
      opening.then(
        (connection) => {
          slot.connection = connection;
        },
        // A failed start is not kept: the next call tries again.
        () => {
          if (this.#current === slot) this.#current = undefined;
        },
      );
    }
    return this.#current.opening;
  }

  /** Stops sharing `connection` (callers that raced here get the one that replaces it) and closes it. */
  #retire(connection: McpConnection): void {
    if (this.#current?.connection === connection) this.#current = undefined;
    if (connection.replaced) return;
    connection.replaced = true;
    void closeConnection(connection, false).finally(() => this.#live.delete(connection));
  }

  #closed(connection: McpConnection): void {
    this.#live.delete(connection);
    if (this.#current?.connection === connection) this.#current = undefined;
    if (connection.retiring) return;
    const { transport } = connection;
    const stdio = transport instanceof ProcessGroupStdioTransport ? transport : undefined;
    this.#log.warn(
      { exit: stdio?.exitDescription, stderr: stdio?.stderrTail || undefined },
      "MCP server closed the connection; it is connected again on the next call",
    );
  }
}

/** An MCP failure as the model (or an operator) should read it. */
function describe(err: unknown, timeoutMs: number): string {
  if (err instanceof SdkError && err.code === SdkErrorCode.RequestTimeout) return `no answer within ${timeoutMs} ms`;
  if (err instanceof SdkError && err.code === SdkErrorCode.ConnectionClosed) return "the server closed the connection during the call";
  if (!(err instanceof Error)) return String(err);
  // fetch says only "fetch failed"; why (ECONNREFUSED, ECONNRESET) is in its cause.
  return err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message;
}
