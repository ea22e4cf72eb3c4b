/**
 * Whether `name` matches a config pattern: `*` stands for any run of
 * characters, `?` for one; everything else is literal. Tool names are
 * [A-Za-z0-9_-], so no path or brace semantics are needed.
 */
export function matchesGlob(pattern: string, name: string): boolean {
  if (!pattern.includes("*") && !pattern.includes("?")) return pattern === name;
  return globRegExp(pattern).test(name);
}

/** Whether any pattern matches. */
export function matchesAny(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => matchesGlob(p, name));
}

function globRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}
