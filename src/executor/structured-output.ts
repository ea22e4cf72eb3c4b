import { type JsonObject, type JsonValue, invalidArgument } from "@qingyu/plugin-api";
import type { Ajv, ValidateFunction } from "ajv";
import { createRequire } from "node:module";

// ajv loads with the first schema compiled: a server with no output schema never loads it (bench:idle).
const requireHere = createRequire(import.meta.url);

/** A compiled output schema and the schema itself (sent as response_format). */
export interface OutputSchema {
  readonly schema: JsonObject;
  readonly validate: ValidateFunction;
}

// Callers may send a schema per call: compiling one costs about a millisecond, so recent ones are kept.
const KEPT = 256;

/** Compiles output schemas once: each agent's, and recent per-call ones. */
export class OutputSchemas {
  private ajv: Ajv | undefined;
  private readonly recent = new Map<string, OutputSchema>();

  /** The compiled schema; a schema that does not compile is INVALID_ARGUMENT naming `field`. */
  compile(schema: JsonObject, field: string): OutputSchema {
    const key = JSON.stringify(schema);
    const known = this.recent.get(key);
    if (known) return known;
    let validate: ValidateFunction;
    try {
      // Named before `new`: TypeScript 7's emit drops the parentheses of `new (x as T).Ajv()`.
      const { Ajv: AjvClass } = requireHere("ajv") as typeof import("ajv");
      this.ajv ??= new AjvClass({ allErrors: true, strict: false });
      validate = this.ajv.compile(schema);
    } catch (err) {
      throw invalidArgument(field, `is not a usable JSON Schema: ${(err as Error).message}`);
    }
    const compiled = { schema, validate };
    if (this.recent.size >= KEPT) this.recent.delete(this.recent.keys().next().value!);
    this.recent.set(key, compiled);
    return compiled;
  }
}

/** The answer parsed and checked, or why it does not match. */
export function checkAnswer(text: string, output: OutputSchema): { value: JsonValue } | { errors: string[] } {
  let value: JsonValue;
  try {
    value = JSON.parse(unfenced(text)) as JsonValue;
  } catch (err) {
    return { errors: [`the answer is not JSON: ${(err as Error).message}`] };
  }
  if (output.validate(value)) return { value };
  return { errors: (output.validate.errors ?? []).map((e) => `${e.instancePath || "(answer)"} ${e.message ?? "is invalid"}`) };
}

/** What the model is told when its answer did not match: once, then the run ends with what it has. */
export function repairPrompt(errors: readonly string[]): string {
  return `Your answer did not match the required JSON Schema: ${errors.join("; ")}. Answer again with only the JSON value, nothing else.`;
}

/** What providers without native structured output are told in the system prompt. */
export function schemaInstruction(schema: JsonObject): string {
  return `Answer with only a JSON value (no prose, no code fence) that matches this JSON Schema: ${JSON.stringify(schema)}`;
}

// Models often wrap JSON in a Markdown fence even when told not to.
function unfenced(text: string): string {
  const t = text.trim();
  const m = /^```(?:json)?\s*\n([\s\S]*?)\n?```$/.exec(t);
  return m ? m[1]! : t;
}
