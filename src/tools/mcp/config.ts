import { z } from "zod";

/** Per-call timeout when a server's config names none (the MCP SDK's own default). */
const DEFAULT_MCP_TIMEOUT_MS = 60_000;

const STDIO_KEYS = ["command", "args", "env", "cwd"] as const;
const HTTP_KEYS = ["url", "headers"] as const;

/**
 * One MCP server (config `tools.mcp.<serverName>`): a command to run and talk
 * to over stdio, or the URL of a streamable HTTP endpoint — exactly one of them.
 */
export const McpServerSchema = z
  .strictObject({
    /** stdio: the program to start (a bare name is looked up on PATH; a relative path is from the config's folder). */
    command: z.string().min(1).optional(),
    /** stdio: its arguments. */
    args: z.array(z.string()).optional(),
    /** stdio: environment on top of a minimal safe one (HOME, PATH, ...): the runtime's own secrets are not passed on. */
    env: z.record(z.string(), z.string()).optional(),
    /** stdio: its working folder (relative: from the config's folder). */
    cwd: z.string().min(1).optional(),
    /** streamable HTTP: the MCP endpoint. */
    url: z.url({ protocol: /^https?$/, error: "an http:// or https:// URL" }).optional(),
    /** streamable HTTP: headers sent with every request (an API key, say). */
    headers: z.record(z.string(), z.string()).optional(),
    /** Globs over the server's own tool names ("get_*"); absent: all its tools. */
    allow: z.array(z.string().min(1)).optional(),
    /** Per call; each progress report from the server starts it again. */
    timeoutMs: z.int().positive().default(DEFAULT_MCP_TIMEOUT_MS),
    /** Globs over its tool names to treat as idempotent (a tool's own `idempotentHint` counts too). */
    idempotent: z.array(z.string().min(1)).optional(),
  })
  .superRefine((config, ctx) => {
    const stdio = STDIO_KEYS.filter((key) => config[key] !== undefined);
    const http = HTTP_KEYS.filter((key) => config[key] !== undefined);
    if (config.command === undefined && config.url === undefined) {
      ctx.addIssue({ code: "custom", message: 'give either "command" (a stdio server) or "url" (a streamable HTTP server)' });
    } else if (stdio.length > 0 && http.length > 0) {
      ctx.addIssue({
        code: "custom",
        message: `a server is either stdio (command, args, env, cwd) or streamable HTTP (url, headers), not both: found ${[...stdio, ...http].join(", ")}`,
      });
    } else if (config.command === undefined && stdio.length > 0) {
      ctx.addIssue({ code: "custom", path: [stdio[0]!], message: `"${stdio[0]}" belongs to a stdio server, which needs "command"` });
    }
  });

/** A validated MCP server config (timeoutMs filled in). */
export type McpServerConfig = z.infer<typeof McpServerSchema>;
