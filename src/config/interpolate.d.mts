/** A reference that cannot be resolved: `path` is the key path of the value, `variable` the name (absent for a malformed reference). */
export declare class InterpolationError extends Error {
  readonly path: (string | number)[];
  readonly variable: string | undefined;
}

/**
 * `text` with every `${NAME}` / `${NAME:-default}` replaced from `env`; `$${`
 * stands for a literal `${`. The default applies when the variable is unset
 * or empty; a variable that is unset with no default is an InterpolationError.
 */
export declare function substitute(text: string, env: Readonly<Record<string, string | undefined>>, path?: (string | number)[]): string;

/**
 * Parses a config file's text (`json`, or YAML for anything else) with every
 * value interpolated from `env`. Throws the parser's error for text that does
 * not parse, and InterpolationError for a reference that cannot be resolved.
 */
export declare function parseConfigText(text: string, format: "json" | "yaml", env: Readonly<Record<string, string | undefined>>): unknown;
