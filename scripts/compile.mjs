// What scripts/build-package.mjs and scripts/build-dist.mjs share: finding the TypeScript
// compiler, and compiling beside the output folder and swapping it in, so a process importing
// from that folder meanwhile (a test run beside `npm pack`, a server starting) finds the old
// files or the new ones, never a half-written folder.
import { spawnSync } from "node:child_process";
import { existsSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** The TypeScript compiler under `root`, or undefined in a production install (no dev dependencies). */
export function findTsc(root) {
  try {
    return join(dirname(createRequire(join(root, "package.json")).resolve("typescript/package.json")), "bin", "tsc");
  } catch {
    return undefined;
  }
}

/**
 * Compiles the tsconfig `project` into the folder `out`: built in `out`.next, `finish` run on that
 * folder, then swapped in. A failed compile exits the process with the compiler's status.
 */
export function compileInto(tsc, project, out, finish = () => undefined) {
  const next = `${out}.next`;
  rmSync(next, { recursive: true, force: true });
  const run = spawnSync(process.execPath, [tsc, "-p", project, "--outDir", next], { stdio: "inherit" });
  if (run.status !== 0) {
    rmSync(next, { recursive: true, force: true });
    process.exit(run.status ?? 1);
  }
  finish(next);
  const old = `${out}.old`;
  rmSync(old, { recursive: true, force: true });
  if (existsSync(out)) renameSync(out, old);
  renameSync(next, out);
  rmSync(old, { recursive: true, force: true });
}
