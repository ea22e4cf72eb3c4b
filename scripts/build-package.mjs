#!/usr/bin/env node
// `node scripts/build-package.mjs <name>...`: builds packages/<name> (plugin-api: the plugin
// SDK; client: @qingyu/client) to JS + .d.ts in its dist/. The server, the plugins, the examples
// and the tests import them by package name, so they are built on `npm install` (the root's
// "prepare"), before the tests, and by `npm pack` in their folder.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compileInto, findTsc } from "./compile.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

const names = process.argv.slice(2);
if (names.length === 0) {
  console.error("usage: node scripts/build-package.mjs <package folder under packages/>...");
  process.exit(2);
}
const tsc = findTsc(root);
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
  compileInto(tsc, join(pkg, "tsconfig.json"), join(pkg, "dist"));
}
