#!/usr/bin/env node
// `node scripts/build-package.mjs <name>...`: builds packages/<name> (plugin-api: the plugin
// SDK; client: @qingyu/client) to JS + .d.ts in its dist/. The server, the plugins, the examples
// and the tests import them by package name, so they are built on `npm install` (the root's
// "prepare"), before the tests, and by `npm pack` in their folder.
import { spawnSync } from "node:child_process";
import { existsSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The TypeScript compiler, or undefined in a production install (no dev dependencies). */
function findTsc() {
  try {
    return join(dirname(createRequire(join(root, "package.json")).resolve("typescript/package.json")), "bin", "tsc");
  } catch {
    return undefined;
  }
}

const names = process.argv.slice(2);
if (names.length === 0) {
  console.error("usage: node scripts/build-package.mjs <package folder under packages/>...");
  process.exit(2);
}
const tsc = findTsc();
for (const name of names) {
  const pkg = join(root, "packages", name);
  // An install without its sources (the server's container image has no client) has nothing to build.
  if (!existsSync(join(pkg, "src", "index.ts"))) continue;
  if (!tsc) {
    // A production install uses the dist/ built before it.
    if (existsSync(join(pkg, "dist", "index.js"))) continue;
    console.error(`build-package: typescript is not installed and packages/${name}/dist is missing: run \`npm install\` (with dev dependencies)`);
    process.exit(1);
  }
  // Built beside dist/ and swapped in, so a process importing the package meanwhile (a test run
  // beside `npm pack`) finds the old files or the new ones, never a half-written folder.
  const next = join(pkg, "dist.next");
  rmSync(next, { recursive: true, force: true });
  const run = spawnSync(process.execPath, [tsc, "-p", join(pkg, "tsconfig.json"), "--outDir", next], { stdio: "inherit" });
  if (run.status !== 0) {
    rmSync(next, { recursive: true, force: true });
    process.exit(run.status ?? 1);
  }
  rmSync(join(pkg, "dist"), { recursive: true, force: true });
  renameSync(next, join(pkg, "dist"));
}
