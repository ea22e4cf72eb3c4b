import type { LogFn, PluginLogger } from "../observability.ts";

/** One recorded log line: pino's shape, with the level by name and errors kept as they were thrown. */
export interface LogLine {
  level: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
  msg?: string;
  [field: string]: unknown;
}

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/** A logger that records its lines (and its children's) in `lines` instead of writing them. */
export class TestLogger implements PluginLogger {
  readonly fatal = this.method("fatal");
  readonly error = this.method("error");
  readonly warn = this.method("warn");
  readonly info = this.method("info");
  readonly debug = this.method("debug");
  readonly trace = this.method("trace");

  /** `level` ("trace" by default: every line is recorded) and the fields every line carries. */
  constructor(
    public level = "trace",
    private readonly bindings: Record<string, unknown> = {},
    /** Every line, this logger's and its children's, oldest first. */
    readonly lines: LogLine[] = [],
  ) {}

  child(bindings: Record<string, unknown>): TestLogger {
    return new TestLogger(this.level, { ...this.bindings, ...bindings }, this.lines);
  }

  isLevelEnabled(level: string): boolean {
    return (LEVELS[level] ?? 0) >= (LEVELS[this.level] ?? 0);
  }

  private method(level: LogLine["level"]): LogFn {
    return ((first: unknown, ...rest: unknown[]) => {
      if (!this.isLevelEnabled(level)) return;
      const line: LogLine = { level, ...this.bindings };
      if (typeof first === "string") {
        line.msg = format(first, rest);
      } else {
        // pino: an Error as the object goes under `err`, and gives the message when none is given.
        if (first instanceof Error) line.err = first;
        else if (first !== null && typeof first === "object") Object.assign(line, first);
        const [msg, ...args] = rest;
        if (typeof msg === "string") line.msg = format(msg, args);
        else if (first instanceof Error) line.msg = first.message;
      }
      this.lines.push(line);
    }) as LogFn;
  }
}

/** printf-style interpolation as pino does it (%s %d %i %f %j %o %O %%). */
function format(msg: string, args: unknown[]): string {
  let i = 0;
  return msg.replace(/%([sdifjoO%])/g, (all, c: string) => {
    if (c === "%") return "%";
    if (i >= args.length) return all;
    const arg = args[i++];
    switch (c) {
      case "d":
      case "f":
        return String(Number(arg));
      case "i":
        return String(Math.trunc(Number(arg)));
      case "s":
        return String(arg);
      default:
        try {
          return JSON.stringify(arg) ?? String(arg);
        } catch {
          return String(arg);
        }
    }
  });
}
