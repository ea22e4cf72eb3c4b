import { Code, ConnectError, type JsonObject, type Tool, type ToolSource } from "@qingyu/plugin-api";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ConfigError } from "../../config/load.ts";
import type { ToolSpec as WireToolSpec } from "../../gen/qingyu/agent/v1/tool_pb.ts";
import { matchesAny } from "../glob.ts";
import { callTool } from "./call.ts";
import { ToolServiceChannel } from "./channel.ts";
import type { BackendToolsConfig } from "./config.ts";
import { isToolName } from "../tool-name.ts";

/** What a BackendToolSource needs besides its config. */
export interface BackendToolSourceDeps {
  log: Logger;
  /** The config file's folder: tls file paths are relative to it. */
  baseDir: string;
  /** Largest message accepted from the backend (a tool's output); default 4 MiB. A larger one is a tool error. */
  maxOutputBytes?: number;
  /** ListTools's deadline; default 10 s. */
  listTimeoutMs?: number;
}

const SEPARATOR = "__";
const DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
const DEFAULT_LIST_TIMEOUT_MS = 10_000;

/**
 * The tools of a backend's ToolService (config `tools.backends.<name>`), named
 * `<name>__<tool>`: one channel per backend, shared by every call, with the
 * deadline and cancel of each call carried to the backend.
 */
export class BackendToolSource implements ToolSource {
  private readonly channel: ToolServiceChannel;
  private readonly log: Logger;
  private readonly allowed: (name: string) => boolean;
  private readonly listTimeoutMs: number;
  private disposed = false;

  constructor(
    private readonly name: string,
    private readonly config: BackendToolsConfig,
    deps: BackendToolSourceDeps,
  ) {
    const configPath = `tools.backends.${name}`;
    // The prefix of every tool name, so it must leave room for one.
    if (!/^[A-Za-z0-9_-]{1,61}$/.test(name)) throw new ConfigError(`invalid config: ${configPath}: the name must be 1 to 61 of [A-Za-z0-9_-]`);
    this.channel = new ToolServiceChannel(config, {
      baseDir: deps.baseDir,
      maxReceiveBytes: deps.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES,
      configPath,
    });
    this.log = deps.log.child({ backend: name, address: config.address });
    const { allow } = config;
    this.allowed = allow === undefined ? () => true : (tool) => matchesAny(allow, tool);
    this.listTimeoutMs = deps.listTimeoutMs ?? DEFAULT_LIST_TIMEOUT_MS;
  }

  /** The backend's tools now, namespaced and filtered by `allow`; rejects with a ConnectError carrying the backend's status. */
  async list(signal: AbortSignal): Promise<readonly Tool[]> {
    if (this.disposed) throw new ConnectError(`backend "${this.name}" is closed`, Code.Unavailable);
    let specs: WireToolSpec[];
    try {
      specs = (await this.channel.listTools(Date.now() + this.listTimeoutMs, signal)).tools;
    } catch (err) {
      if (signal.aborted && err === signal.reason) throw err;
      const { code, details } = err as grpc.ServiceError;
      throw new ConnectError(
        `backend "${this.name}" (${this.config.address}) ListTools failed: ${grpc.status[code] ?? code}: ${details}`,
        code as number as Code,
        undefined,
        undefined,
        err,
      );
    }
    const tools: Tool[] = [];
    const seen = new Set<string>();
    for (const spec of specs) {
      const fullName = `${this.name}${SEPARATOR}${spec.name}`;
      if (!isToolName(spec.name) || !isToolName(fullName)) {
        this.log.warn({ tool: spec.name }, `skipped tool: "${fullName}" is not 1 to 64 of [A-Za-z0-9_-]`);
        continue;
      }
      if (seen.has(spec.name)) {
        this.log.warn({ tool: spec.name }, "skipped tool: the backend lists this name twice");
        continue;
      }
      seen.add(spec.name);
      if (this.allowed(spec.name)) tools.push(this.toTool(fullName, spec));
    }
    return tools;
  }

  /** Closes the channel; calls still running fail. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.channel.close();
  }

  private toTool(fullName: string, spec: WireToolSpec): Tool {
    const target = { backend: this.name, tool: spec.name };
    return {
      name: fullName,
      description: spec.description,
      // A backend that declares no schema takes any object.
      inputSchema: spec.inputSchema ?? ({ type: "object" } as JsonObject),
      outputSchema: spec.outputSchema,
      needsApproval: spec.needsApproval,
      idempotent: spec.idempotent,
      sequential: spec.sequential,
      timeoutMs: spec.timeoutMs || this.config.timeoutMs,
      maxConcurrency: spec.maxConcurrency || undefined,
      execute: (args, ctx) => {
        if (this.disposed) throw new ConnectError(`backend "${this.name}" is closed`, Code.Unavailable);
        return callTool(this.channel, target, args, ctx);
      },
    };
  }
}
