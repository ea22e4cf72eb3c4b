#!/usr/bin/env node
// Builds packages/client (@qingyu/client, the TypeScript client) to JS + .d.ts in
// its dist/, as scripts/build-plugin-api.mjs does for the plugin SDK: on
// `npm install` (the root's "prepare"), before the tests, and on `npm pack` in its
// folder. The examples and the client e2e test import it by its package name.
import { spawnSync } from "node:child_process";
import { existsSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, "packages", "client");
// An install without the client's sources (the server's container image) has nothing to build.
if (!existsSync(join(pkg, "src", "index.ts"))) process.exit(0);
let tsc;
try {
  tsc = join(dirname(createRequire(join(root, "package.json")).resolve("typescript/package.json")), "bin", "tsc");
} catch {
  // A production install (no dev dependencies) uses the dist/ built before it.
  if (existsSync(join(pkg, "dist", "index.js"))) process.exit(0);
  console.error("build-client: typescript is not installed and packages/client/dist is missing: run `npm install` (with dev dependencies)");
  process.exit(1);
}
// Built beside dist/ and swapped in, so a process importing the client meanwhile finds the old files or the new ones.
const next = join(pkg, "dist.next");
rmSync(next, { recursive: true, force: true });
const run = spawnSync(process.execPath, [tsc, "-p", join(pkg, "tsconfig.json"), "--outDir", next], { stdio: "inherit" });
if (run.status !== 0) {
  rmSync(next, { recursive: true, force: true });
  process.exit(run.status ?? 1);
}
rmSync(join(pkg, "dist"), { recursive: true, force: true });
renameSync(next, join(pkg, "dist"));
