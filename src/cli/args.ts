import { parseArgs } from "node:util";
import type { CommandName } from "./usage.ts";

/** Arguments a command does not take; the CLI prints the message and the command's usage, and exits 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** Whose usage to print. */
    readonly command?: CommandName,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

type Spec = Record<string, { type: "string" }>;

/** A command's parsed arguments, or `help` when it was asked for its usage (-h, --help). */
export type CommandArgs<T extends Spec> = { help: true } | { help: false; values: { [K in keyof T]?: string }; positionals: string[] };

/** Parses `args` for `command` (strict: an unknown option is a UsageError); -h and --help ask for the usage. */
export function commandArgs<T extends Spec>(command: CommandName, args: readonly string[], spec: T, positionals = false): CommandArgs<T> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: { ...spec, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: positionals });
  } catch (err) {
    throw new UsageError((err as Error).message, command);
  }
  const { help, ...values } = parsed.values as Record<string, string | boolean | undefined>;
  if (help) return { help: true };
  return { help: false, values: values as { [K in keyof T]?: string }, positionals: parsed.positionals };
}

/** A port flag's value: undefined when absent; a UsageError naming the flag when not 0-65535. */
/** `--workers N|auto`: a count 1-256, or auto (one per core). */
export function workersFlag(command: CommandName, value: string | undefined): number | "auto" | undefined {
  if (value === undefined) return undefined;
  if (value === "auto") return "auto";
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 256)
    throw new UsageError(`--workers: expected a count 1-256 or auto, got "${value}"`, command);
  return Number(value);
}

export function portFlag(command: CommandName, flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) > 65535) throw new UsageError(`${flag}: expected a port number 0-65535, got "${value}"`, command);
  return Number(value);
}
