#!/usr/bin/env node
// `npm run build` (and the root's "prepare", so `npm install` does it): compiles src/ to
// dist/ as JavaScript. bin/qingyu.mjs runs dist/ when it is at least as new as every file
// under src/, so a server starts without tsx (about 30 MiB less resident memory at rest,
// `npm run bench:idle`), and from src/ through tsx otherwise. Built beside dist/ and swapped
// in, so a server starting meanwhile finds the old files or the new ones, never half of them.
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compileInto, findTsc } from "./compile.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// An install without the server's sources has nothing to build.
if (!existsSync(join(root, "src", "main.ts"))) process.exit(0);
const tsc = findTsc(root);
// A production install (no dev dependencies) runs what was built before it, or src/ through tsx.
if (!tsc) process.exit(0);
compileInto(tsc, join(root, "tsconfig.build.json"), join(root, "dist"), (next) => {
  // The JavaScript modules of src/ (their .d.mts is what the compiler reads) go as they are.
  copyJavaScript(join(root, "src"), next);
  // Its mtime is the build's: bin/qingyu.mjs compares it with src/'s files.
  writeFileSync(join(next, ".built"), `${new Date().toISOString()}\n`);
});

function copyJavaScript(from, to) {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    if (entry.isDirectory()) copyJavaScript(source, join(to, entry.name));
    else if (/\.m?js$/.test(entry.name)) {
      mkdirSync(to, { recursive: true });
      copyFileSync(source, join(to, entry.name));
    }
  }
}
