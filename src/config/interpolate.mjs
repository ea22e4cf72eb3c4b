// `${NAME}` and `${NAME:-default}` in config values, read from the environment.
//
// Plain JavaScript, with its types in interpolate.d.mts: `qingyu health` reads
// the config's port through this module without loading TypeScript (a probe
// must stay light), and the server reads the whole config through it too, so
// both see the same values.
//
// Only values are interpolated, never keys or comments, and a value stays one
// value whatever the variable holds (the text is not spliced into the YAML).
// An unquoted YAML value is typed after substitution the way YAML types it
// (`port: ${PORT:-50051}` is a number, `${X:-null}` null, `${X:-true}` a
// boolean); a quoted one stays a string. JSON values stay strings.
import { isPair, isScalar, isSeq, parse, parseDocument, visit } from "yaml";

/** A reference that cannot be resolved: `path` is the key path of the value, `variable` the name (absent for a malformed reference). */
export class InterpolationError extends Error {
  constructor(message, path, variable) {
    super(message);
    this.name = "InterpolationError";
    this.path = path;
    this.variable = variable;
  }
}

// `$${` (a literal `${`), a reference, or a `${` never closed.
const REFERENCE = /\$\$\{|\$\{([^}]*)\}|\$\{[^}]*$/g;
const NAME = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

/**
 * `text` with every `${NAME}` / `${NAME:-default}` replaced from `env`; `$${`
 * stands for a literal `${`. The default applies when the variable is unset
 * or empty; a variable that is unset with no default is an error.
 */
export function substitute(text, env, path = []) {
  if (!text.includes("${")) return text;
  return text.replace(REFERENCE, (match, inner) => {
    if (match === "$${") return "${";
    const where = path.length ? `${path.join(".")}: ` : "";
    const parts = inner === undefined ? null : NAME.exec(inner);
    if (!parts) {
      throw new InterpolationError(
        `${where}malformed reference ${JSON.stringify(match)}: write \${NAME} or \${NAME:-default} (and $\${ for a literal \${)`,
        path,
      );
    }
    const [, name, fallback] = parts;
    const value = env[name];
    if (fallback !== undefined) return value ? value : fallback;
    if (value === undefined) {
      throw new InterpolationError(
        `${where}environment variable ${name} is not set (the value says \${${name}}): set it, or give a default with \${${name}:-default}`,
        path,
        name,
      );
    }
    return value;
  });
}

/** How YAML types an unquoted value that reads `text`: a number, a boolean or null; otherwise the text itself. */
function asPlainScalar(text) {
  if (text === "") return text;
  if (/^(?:~|null|Null|NULL)$/.test(text)) return null;
  let value;
  try {
    value = parse(text, { logLevel: "silent" });
  } catch {
    return text;
  }
  return typeof value === "number" || typeof value === "boolean" ? value : text;
}

// The key path of a node from the ancestors yaml's visit() gives: map keys and sequence indexes.
function keyPath(ancestors, node) {
  const path = [];
  for (let i = 0; i < ancestors.length; i++) {
    const at = ancestors[i];
    if (isPair(at)) path.push(isScalar(at.key) ? String(at.key.value) : String(at.key));
    else if (isSeq(at)) path.push(at.items.indexOf(ancestors[i + 1] ?? node));
  }
  return path;
}

function substituteStrings(value, env, path) {
  if (typeof value === "string") return substitute(value, env, path);
  if (Array.isArray(value)) return value.map((v, i) => substituteStrings(v, env, [...path, i]));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteStrings(v, env, [...path, k])]));
  }
  return value;
}

/**
 * Parses a config file's text (`json`, or YAML for anything else) with every
 * value interpolated from `env`. Throws the parser's error for text that does
 * not parse, and InterpolationError for a reference that cannot be resolved.
 */
export function parseConfigText(text, format, env) {
  if (format === "json") return substituteStrings(JSON.parse(text), env, []);
  const doc = parseDocument(text);
  if (doc.errors.length) throw doc.errors[0];
  for (const warning of doc.warnings) process.emitWarning(warning);
  visit(doc, {
    Scalar(key, node, ancestors) {
      if (key === "key" || typeof node.value !== "string" || !node.value.includes("${")) return;
      const text = substitute(node.value, env, keyPath(ancestors, node));
      node.value = node.type === "PLAIN" ? asPlainScalar(text) : text;
    },
  });
  return doc.toJS();
}
