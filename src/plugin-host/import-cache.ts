import type { PluginDefinition } from "@qingyu/plugin-api";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

/**
 * The plugin each module file gave at its last import, with a hash of the
 * file's bytes then. A reload imports a file under a new URL (a query) to get
 * its edits, and Node never frees a module record: re-importing every plugin
 * file on every reload kept each old copy (source, code, module wrappers),
 * about 12 KiB per small file per reload. A file whose bytes are unchanged
 * gives the plugin it gave last time instead.
 *
 * Kept per process, as the module cache it stands in front of is. Only the
 * entry file is hashed: the modules it imports are not imported afresh either.
 */
const imported = new Map<string, { hash: string; definition: PluginDefinition }>();

/** A hash of the file's bytes now, or undefined when it cannot be read (the import will say why). */
export function contentHash(path: string): string | undefined {
  try {
    return createHash("sha256").update(readFileSync(path)).digest("hex");
  } catch {
    return undefined;
  }
}

/** The plugin `path` gave when its bytes hashed to `hash`, if that is still so. */
export function cachedPlugin(path: string, hash: string | undefined): PluginDefinition | undefined {
  const known = imported.get(path);
  return hash !== undefined && known?.hash === hash ? known.definition : undefined;
}

/** Records what importing `path` (with bytes hashing to `hash`) gave. */
export function rememberPlugin(path: string, hash: string | undefined, definition: PluginDefinition): void {
  if (hash === undefined) imported.delete(path);
  else imported.set(path, { hash, definition });
}

/**
 * Drops a plugin whose `dispose` has run: its module may have released what it
 * holds, so a later use imports the file afresh rather than reusing it.
 */
export function forgetPlugin(definition: PluginDefinition): void {
  for (const [path, known] of imported) if (known.definition === definition) imported.delete(path);
}
