import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onTestProcessExit } from "./on-exit.ts";

// Kept on globalThis: vitest gives each test file its own copy of this module,
// and one exit hook per test process removes what all of them made.
const KEY = Symbol.for("qingyu.test.tempDirs");

function registry(): Set<string> {
  const global = globalThis as Record<symbol, Set<string> | undefined>;
  let dirs = global[KEY];
  if (!dirs) {
    const made = new Set<string>();
    global[KEY] = dirs = made;
    // However the test process ends (done, failed, timed out and torn down), its folders go with it.
    onTestProcessExit(() => {
      for (const dir of made) rmSync(dir, { recursive: true, force: true });
    });
  }
  return dirs;
}

/** A fresh folder under the OS temp dir, removed when the test process exits (or earlier, with removeTempDir). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  registry().add(dir);
  return dir;
}
