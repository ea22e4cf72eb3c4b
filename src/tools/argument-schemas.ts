import type { JsonObject } from "@qingyu/plugin-api";
import type { Ajv, ValidateFunction } from "ajv";
import type { Ajv2020 } from "ajv/dist/2020.js";
import { createRequire } from "node:module";

// ajv loads with the first tool schema compiled: a server with no tools never loads it (bench:idle).
const requireHere = createRequire(import.meta.url);

function draft07(options: { allErrors: boolean; strict: boolean }): Ajv {
  const { Ajv: AjvClass } = requireHere("ajv") as typeof import("ajv");
  return new AjvClass(options);
}

function draft2020(options: { allErrors: boolean; strict: boolean }): Ajv2020 {
  const { Ajv2020: Ajv2020Class } = requireHere("ajv/dist/2020.js") as typeof import("ajv/dist/2020.js");
  return new Ajv2020Class(options);
}

/** A compiled argument check: the errors, one line each; empty when the arguments match. */
export type ArgumentCheck = (args: unknown) => string[];

/**
 * Compiles tools' input schemas. One validator per draft, so each schema is
 * compiled once, not per call: MCP servers built with zod 4 declare draft
 * 2020-12; tool plugins' defineTool writes draft-07. Throws what ajv throws
 * for a schema that does not compile (callers word the error for their source).
 */
export class ArgumentSchemas {
  private draft07: Ajv | undefined;
  private draft2020: Ajv2020 | undefined;

  compile(schema: JsonObject): ArgumentCheck {
    const options = { allErrors: true, strict: false };
    // The classes named before `new`: TypeScript 7's emit drops the parentheses of `new (x as T).Ajv()`.
    const validator = String(schema.$schema ?? "").includes("2020-12") ? (this.draft2020 ??= draft2020(options)) : (this.draft07 ??= draft07(options));
    const validate: ValidateFunction = validator.compile(schema);
    return (args) => (validate(args) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "(arguments)"} ${e.message ?? "is invalid"}`));
  }
}
