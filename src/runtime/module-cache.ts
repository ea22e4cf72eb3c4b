import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * Drops a file from the CommonJS module cache. On Node, tsx loads a `.ts` or
 * `.js` file outside a `"type": "module"` package as CommonJS (through
 * require, with the CommonJS hooks bin/qingyu.mjs registers), whose cache is
 * keyed by path and ignores the query string a reload adds to the import URL;
 * without this, a reload would get the file as it was at start. Only the
 * entry is dropped: the modules it requires stay cached, as the modules an ES
 * module entry imports do. Harmless when the file was never loaded that way.
 *
 * Deno keys its module cache by URL, so the query alone makes a reload import
 * a plugin file afresh, except under node_modules: Deno resolves every file
 * there as part of its npm package and drops the query, so an npm package
 * plugin (`plugins.packages`) keeps the code it had at start until a restart.
 */
export function forgetCommonJs(path: string): void {
  delete require.cache[path];
}
