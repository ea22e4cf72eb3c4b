import { formatIssue } from "@qingyu/plugin-api";
import { readFileSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import type { z } from "zod";
import { InterpolationError, parseConfigText } from "./interpolate.mjs";
import { ConfigSchema, type Config } from "./schema.ts";

/** A configuration that cannot be used; the CLI prints it and exits with status 2. */
export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** Command-line values that win over the file and the environment. */
export interface ConfigOverrides {
  port?: number;
  httpPort?: number;
  workers?: number | "auto";
}

/** A loaded config and where relative paths in it resolve from. */
export interface LoadedConfig {
  config: Config;
  baseDir: string;
}

/**
 * Reads the file (its `${VAR}` / `${VAR:-default}` references filled from `env`),
 * applies the environment variables and overrides, and validates; throws
 * ConfigError naming the bad key.
 */
export function loadConfig(file: string | undefined, env: Readonly<Record<string, string | undefined>>, overrides: ConfigOverrides = {}): LoadedConfig {
  const raw = file ? readConfigFile(file, env) : {};
  applyEnv(raw, env);
  if (overrides.port !== undefined) section(raw, "server").port = overrides.port;
  if (overrides.httpPort !== undefined) section(raw, "server").httpPort = overrides.httpPort;
  if (overrides.workers !== undefined) section(raw, "server").workers = overrides.workers;
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid config${file ? ` (${file})` : ""}:\n${formatIssues(parsed.error)}`);
  return { config: parsed.data, baseDir: file ? dirname(resolve(file)) : process.cwd() };
}

function readConfigFile(file: string, env: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new ConfigError(`cannot read config file ${file}: ${(cause as Error).message}`, { cause });
  }
  let value: unknown;
  const json = extname(file) === ".json";
  try {
    value = parseConfigText(text, json ? "json" : "yaml", env);
  } catch (cause) {
    if (cause instanceof InterpolationError) throw new ConfigError(`invalid config (${file}):\n  ${cause.message}`, { cause });
    throw new ConfigError(`config file ${file} is not valid ${json ? "JSON" : "YAML"}: ${(cause as Error).message}`, { cause });
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new ConfigError(`config file ${file} must hold a mapping at the top level`);
  return value as Record<string, unknown>;
}

// Environment variables the README documents; each lands on one config key.
function applyEnv(raw: Record<string, unknown>, env: Readonly<Record<string, string | undefined>>): void {
  const int = (name: string, value: string): number => {
    if (!/^\d+$/.test(value)) throw new ConfigError(`invalid config: environment variable ${name}: expected a port number, got "${value}"`);
    return Number(value);
  };
  if (env.PORT) section(raw, "server").port = int("PORT", env.PORT);
  if (env.HTTP_PORT) section(raw, "server").httpPort = int("HTTP_PORT", env.HTTP_PORT);
  if (env.LOG_LEVEL) section(raw, "log").level = env.LOG_LEVEL;
  if (env.LOG_FORMAT) section(raw, "log").format = env.LOG_FORMAT;
  if (env.REDIS_URL) section(raw, "redis").url = env.REDIS_URL;
  if (env.DATABASE_URL) section(raw, "postgres").url = env.DATABASE_URL;
}

function section(raw: Record<string, unknown>, key: string): Record<string, unknown> {
  const value = raw[key];
  if (value !== null && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  const fresh: Record<string, unknown> = {};
  raw[key] = fresh;
  return fresh;
}

/** One line per problem, each naming the key path: the plugin options' format, so config and options errors read alike. */
function formatIssues(error: z.ZodError, prefix = ""): string {
  return error.issues.map((issue) => `  ${formatIssue(issue, prefix)}`).join("\n");
}
