import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * Drops a file from the CommonJS module cache. On Node, tsx loads a `.ts` or
 * `.js` file outside a `"type": "module"` package as CommonJS, whose cache is
 * keyed by path and ignores the query string a reload adds to the import URL;
 * without this, a reload would get the file as it was at start. Harmless when
 * the file was never loaded that way (ESM, or Deno).
 */
export function forgetCommonJs(path: string): void {
  delete require.cache[path];
}
