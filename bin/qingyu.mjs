#!/usr/bin/env node
// Node cannot load TypeScript by itself. The server runs from dist/ (JavaScript
// built by `npm install`) when that is current, else from src/ with tsx registered
// first, so it also runs with no build step. Deno runs src/ and needs none of this.
//
// `import("tsx")` is what `node --import tsx` does: tsx's ES module hooks *and*
// its CommonJS hooks. Both are needed. Node decides a plugin file's format from
// the nearest package.json: a .ts or .js file with no "type": "module" above it
// is CommonJS, and tsx hands such a file to Node's CommonJS loader (require).
// With the ES module hooks alone (tsx/esm/api's register()), that loader cannot
// compile TypeScript or ES module syntax, tries require(esm) on a module the ES
// loader is already loading, and every such plugin fails with "Cannot require()
// ES Module ... in a cycle" (a syntax error in it is reported as that too).
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// `qingyu health` is a container's probe, run every few seconds: it loads neither tsx nor the server.
const [command, ...args] = process.argv.slice(2);
if (command === "health" && !args.some((a) => a === "-h" || a === "--help")) {
  const { runHealth } = await import("../src/cli/health-probe.mjs");
  // Not process.exit(): stdout may be a pipe still being written (asynchronous off Linux).
  process.exitCode = await runHealth(args, process.env);
} else {
  // The plugin SDK is the one part built (by `npm install`); an install with
  // --ignore-scripts skips that, and the server would fail on a bare import error.
  if (!existsSync(new URL("../packages/plugin-api/dist/index.js", import.meta.url))) {
    process.stderr.write("qingyu: the plugin SDK (packages/plugin-api) is not built: run `npm run build:plugin-api` (npm install does it)\n");
    process.exit(1);
  }
  const built = "Deno" in globalThis ? "source" : builtState();
  if (built === "current") {
    await import("../dist/main.js");
  } else {
    // Said once, on stderr: running src/ is slower to start and about 50 MiB heavier at rest, which an operator should not find out from a graph.
    if (built === "stale")
      process.stderr.write("qingyu: src/ changed since dist/ was built: running src/ through tsx; `npm run build` runs the built server\n");
    if (!("Deno" in globalThis)) await import("tsx");
    await import("../src/main.ts");
  }
}

/**
 * Whether dist/ (`npm run build`, run by `npm install`) holds the server as it is in
 * src/ ("current": built after every file there last changed), is older ("stale"),
 * or is not wanted or not there ("source"). Current, it runs without tsx, about
 * 50 MiB less at rest; a .ts plugin still loads (tsx is registered for it then).
 * QINGYU_FROM_SOURCE=1 runs src/ regardless.
 */
function builtState() {
  if (process.env.QINGYU_FROM_SOURCE === "1") return "source";
  const stamp = new URL("../dist/.built", import.meta.url);
  let builtAt;
  try {
    builtAt = statSync(stamp).mtimeMs;
  } catch {
    return "source";
  }
  const newer = (dir) =>
    readdirSync(dir, { withFileTypes: true }).some((entry) => {
      const path = join(dir, entry.name);
      return entry.isDirectory() ? newer(path) : statSync(path).mtimeMs > builtAt;
    });
  return newer(fileURLToPath(new URL("../src", import.meta.url))) ? "stale" : "current";
}
