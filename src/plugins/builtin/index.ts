import type { PluginDefinition } from "../define.ts";
import echo from "./echo.ts";
import logging from "./logging.ts";
import openai from "./openai.ts";
import validation from "./validation.ts";

/** The plugins that ship with the runtime, written against the public contract. */
export const builtinPlugins: readonly PluginDefinition[] = [logging, validation, echo, openai] as unknown as PluginDefinition[];
