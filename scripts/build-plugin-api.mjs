#!/usr/bin/env node
// Builds packages/plugin-api (the plugin SDK) to JS + .d.ts in its dist/. The
// server and the plugins in this repository import the SDK through its
// package name, so it is built on `npm install` (the root's "prepare") and
// before the tests; `npm pack` in its folder builds it too.
import { spawnSync } from "node:child_process";
import { existsSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, "packages", "plugin-api");
let tsc;
try {
  tsc = join(dirname(createRequire(join(root, "package.json")).resolve("typescript/package.json")), "bin", "tsc");
} catch {
  // A production install (no dev dependencies) uses the dist/ built before it.
  if (existsSync(join(pkg, "dist", "index.js"))) process.exit(0);
  console.error("build-plugin-api: typescript is not installed and packages/plugin-api/dist is missing: run `npm install` (with dev dependencies)");
  process.exit(1);
}
// Built beside dist/ and swapped in, so a process importing the SDK meanwhile (a test run
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
