import type { PluginDefinition } from "@qingyu/plugin-api";
import alerting from "./alerting.ts";
import audit from "./audit/plugin.ts";
import auth from "./auth/plugin.ts";
import authorization from "./authorization.ts";
import cache from "./cache/plugin.ts";
import echo from "./echo.ts";
import fallback from "./fallback.ts";
import logging from "./logging.ts";
import openai from "./openai/plugin.ts";
import rateLimit from "./rate-limit/plugin.ts";
import redact from "./redact/plugin.ts";
import validation from "./validation.ts";
import webhooks from "./webhooks/plugin.ts";

/** The plugins that ship with the runtime, written against the public contract. */
export const builtinPlugins: readonly PluginDefinition[] = [
  logging,
  validation,
  auth,
  authorization,
  rateLimit,
  cache,
  audit,
  redact,
  echo,
  openai,
  fallback,
  alerting,
  webhooks,
] as unknown as PluginDefinition[];
