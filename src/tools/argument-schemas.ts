import type { JsonObject } from "@qingyu/plugin-api";
import type { Ajv, ValidateFunction } from "ajv";
import type { Ajv2020 } from "ajv/dist/2020.js";
import { createRequire } from "node:module";

// ajv loads with the first tool schema compiled: a server with no tools never loads it (bench:idle).
const requireHere = createRequire(import.meta.url);

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
    const validator = String(schema.$schema ?? "").includes("2020-12")
      ? (this.draft2020 ??= new (requireHere("ajv/dist/2020.js") as typeof import("ajv/dist/2020.js")).Ajv2020(options))
      : (this.draft07 ??= new (requireHere("ajv") as typeof import("ajv")).Ajv(options));
    const validate: ValidateFunction = validator.compile(schema);
    return (args) => (validate(args) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "(arguments)"} ${e.message ?? "is invalid"}`));
  }
}
