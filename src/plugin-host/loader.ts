import { pluginShapeProblem, type PluginDefinition } from "@qingyu/plugin-api";
import { readdirSync, statSync, readFileSync, existsSync } from "node:fs";
import { dirname, extname, join, resolve } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { forgetCommonJs } from "../runtime/module-cache.ts";
import { cachedPlugin, contentHash, rememberPlugin } from "./import-cache.ts";
import { loadFailureReason } from "./load-error.ts";
import { allowTypeScript, isTypeScript, neededTypeScript } from "../runtime/typescript.ts";

/** A plugin that could not be loaded or set up; start-up stops with exit status 2. */
export class PluginError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PluginError";
  }
}

/** A known plugin and where it came from. */
export interface CatalogEntry {
  definition: PluginDefinition;
  /** "builtin", the file it was loaded from, or "npm:<package> (<file>)". */
  source: string;
  /** Turned off by `plugins.disabled`: listed, but config may not use it. */
  disabled: boolean;
}

/** Where else to look, beyond the plugin directories. */
export interface DiscoveryOptions {
  /** npm packages named in config. */
  packages?: readonly string[];
  /** Plugin names, or entry names in a directory, that are turned off. */
  disabled?: readonly string[];
  /** Where packages are resolved from (the config file's directory). */
  baseDir?: string;
  /**
   * Appended to module URLs as a query so that a reload imports edited files
   * afresh instead of getting the module cache's old copy; a file whose bytes
   * are unchanged since its last such import gives the same plugin again
   * (import-cache.ts).
   */
  bust?: string;
  /**
   * Hears each plugin that cannot be loaded, which is then left out, instead of
   * discovery stopping at the first (`qingyu check` lists them all).
   */
  onError?: (err: PluginError) => void;
}

const MODULE_EXTENSIONS = new Set([".ts", ".mts", ".js", ".mjs"]);

/**
 * Every plugin the runtime knows: the built-ins, then each entry of each
 * plugin directory (a module file, or a folder whose package.json names one),
 * then the configured npm packages.
 */
export async function discoverPlugins(
  builtins: readonly PluginDefinition[],
  dirs: readonly string[],
  options: DiscoveryOptions = {},
): Promise<Map<string, CatalogEntry>> {
  const disabled = new Set(options.disabled ?? []);
  const catalog = new Map<string, CatalogEntry>();
  const add = (definition: PluginDefinition, source: string) => {
    const existing = catalog.get(definition.name);
    if (existing) throw new PluginError(`${source}: plugin name "${definition.name}" is already taken by ${existing.source}`);
    catalog.set(definition.name, { definition, source, disabled: disabled.has(definition.name) });
  };
  const attempt = async (load: () => Promise<void>): Promise<void> => {
    if (!options.onError) return load();
    try {
      await load();
    } catch (err) {
      if (!(err instanceof PluginError)) throw err;
      options.onError(err);
    }
  };
  for (const def of builtins) add(def, "builtin");
  // Before any plugin is imported: a JavaScript plugin may import a .ts file beside it, which only works once tsx is in.
  if (dirs.some(holdsTypeScript)) await allowTypeScript();
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith(".") || name.startsWith("_") || name.endsWith(".d.ts") || /\.test\.[mc]?[jt]s$/.test(name)) continue;
      // A disabled entry is not even imported: turning off a broken file must work.
      if (entryDisabled(name, disabled)) continue;
      await attempt(async () => {
        const file = entryModule(join(dir, name));
        if (file) add(await importPlugin(file, options.bust), file);
      });
    }
  }
  for (const pkg of options.packages ?? []) {
    await attempt(async () => {
      const file = packageModule(pkg, options.baseDir ?? process.cwd());
      add(await importPlugin(file, options.bust, `npm package "${pkg}" (${file})`), `npm:${pkg} (${file})`);
    });
  }
  return catalog;
}

/**
 * Whether a plugin folder's plugins hold a TypeScript module: a .ts entry, or one
 * anywhere in a folder plugin (outside its node_modules). Folders that are not
 * plugins (no package.json, such as plugins/examples) are not looked into.
 */
function holdsTypeScript(dir: string): boolean {
  let budget = 5000;
  const typescript = (name: string) => isTypeScript(name) && !/\.d\.[cm]?ts$/.test(name);
  const walk = (at: string): boolean => {
    for (const entry of entries(at)) {
      if (--budget < 0) return false;
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      if (entry.isDirectory() ? walk(join(at, entry.name)) : typescript(entry.name)) return true;
    }
    return false;
  };
  return entries(dir).some((entry) =>
    entry.isDirectory() ? existsSync(join(dir, entry.name, "package.json")) && walk(join(dir, entry.name)) : typescript(entry.name),
  );
}

function entries(dir: string) {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** Whether a plugin-directory entry (a file, with or without its extension, or a folder) is named in plugins.disabled. */
export function entryDisabled(entry: string, disabled: ReadonlySet<string>): boolean {
  return disabled.has(entry) || disabled.has(entry.replace(/\.[mc]?[jt]s$/, ""));
}

// Node's resolution of a bare name, from the config's directory upwards, without loading it.
function packageModule(pkg: string, baseDir: string): string {
  if (!/^(@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/.test(pkg)) {
    throw new PluginError(`plugins.packages: "${pkg}" is not an npm package name`);
  }
  for (let dir = resolve(baseDir); ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", pkg);
    if (existsSync(join(candidate, "package.json"))) {
      const file = entryModule(candidate);
      if (!file) throw new PluginError(`npm package "${pkg}" (${candidate}) names no module`);
      return file;
    }
    if (dirname(dir) === dir) break;
  }
  throw new PluginError(`plugins.packages: npm package "${pkg}" is not installed (looked in node_modules from ${baseDir} upwards)`);
}

function entryModule(path: string): string | undefined {
  const stat = statSync(path);
  if (stat.isFile()) return MODULE_EXTENSIONS.has(extname(path)) ? path : undefined;
  if (!stat.isDirectory()) return undefined;
  const pkgFile = join(path, "package.json");
  if (!existsSync(pkgFile)) return undefined;
  let pkg: { main?: string; module?: string; exports?: unknown };
  try {
    pkg = JSON.parse(readFileSync(pkgFile, "utf8"));
  } catch (cause) {
    throw new PluginError(`${pkgFile}: not valid JSON`, { cause });
  }
  const target = exportedModule(pkg.exports) ?? pkg.module ?? pkg.main;
  if (!target) throw new PluginError(`${pkgFile}: names no module (set "exports", "module" or "main")`);
  return resolve(path, target);
}

// "exports" as a string, or its "." entry, or that entry's import/default condition.
function exportedModule(exports: unknown): string | undefined {
  if (typeof exports === "string") return exports;
  if (exports === null || typeof exports !== "object") return undefined;
  const root = (exports as Record<string, unknown>)["."] ?? exports;
  if (typeof root === "string") return root;
  if (root === null || typeof root !== "object") return undefined;
  const conditions = root as Record<string, unknown>;
  const pick = conditions.import ?? conditions.default;
  return typeof pick === "string" ? pick : undefined;
}

async function importPlugin(file: string, bust: string | undefined, label = file): Promise<PluginDefinition> {
  let mod: { default?: unknown };
  const path = resolve(file);
  const url = pathToFileURL(path).href;
  // Read before the import: an edit made while it runs is then seen by the next reload. Without
  // a bust (start-up, check) the module cache answers by URL as it always did, and this one stays out.
  const hash = bust ? contentHash(path) : undefined;
  const unchanged = cachedPlugin(path, hash);
  if (unchanged) return unchanged;
  if (bust) forgetCommonJs(path);
  try {
    if (isTypeScript(path)) await allowTypeScript();
    mod = await import(bust ? `${url}?${bust}` : url);
  } catch (cause) {
    if (neededTypeScript(cause)) {
      const why = `it imports TypeScript from outside the plugin folders (${(cause as Error).message}); the built server loads TypeScript support for plugin folders that hold .ts files, or run it from source with QINGYU_FROM_SOURCE=1`;
      throw new PluginError(`${label}: cannot be loaded: ${why}`, { cause });
    }
    throw new PluginError(`${label}: cannot be loaded: ${await loadFailureReason(cause, path)}`, { cause });
  }
  const exported = defaultExport(mod);
  const problem = pluginShapeProblem(exported);
  if (problem) throw new PluginError(`${label}: ${problem}`);
  if (bust) rememberPlugin(path, hash, exported as PluginDefinition);
  return exported as PluginDefinition;
}

/**
 * A module's default export. CommonJS compiled from ES module syntax (tsc,
 * Babel: `exports.__esModule = true; exports.default = plugin`) imports as
 * `{ default: module.exports }` where Node's own interop is used (and Deno's), so
 * its `default` is one level further down; only such a module is unwrapped.
 */
export function defaultExport(mod: { default?: unknown }): unknown {
  const value = mod.default;
  if (value !== null && typeof value === "object" && (value as { __esModule?: unknown }).__esModule === true && "default" in value) {
    return (value as { default: unknown }).default;
  }
  return value;
}
