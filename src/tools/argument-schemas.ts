import type { JsonObject } from "@qingyu/plugin-api";
import { Ajv, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";

/** A compiled argument check: the errors, one line each; empty when the arguments match. */
export type ArgumentCheck = (args: unknown) => string[];

/**
 * Compiles tools' input schemas. One validator per draft, so each schema is
 * compiled once, not per call: MCP servers built with zod 4 declare draft
 * 2020-12; tool plugins' defineTool writes draft-07. Throws what ajv throws
 * for a schema that does not compile (callers word the error for their source).
 */
export class ArgumentSchemas {
  private readonly draft07 = new Ajv({ allErrors: true, strict: false });
  private readonly draft2020 = new Ajv2020({ allErrors: true, strict: false });

  compile(schema: JsonObject): ArgumentCheck {
    const validate: ValidateFunction = (String(schema.$schema ?? "").includes("2020-12") ? this.draft2020 : this.draft07).compile(schema);
    return (args) => (validate(args) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "(arguments)"} ${e.message ?? "is invalid"}`));
  }
}
