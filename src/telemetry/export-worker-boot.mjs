// The export worker's entry. Built (dist/, bin/qingyu.mjs's usual path), the
// worker beside this file is JavaScript. From src/, on Node a worker does not get
// the main thread's TypeScript loader (whether registered by bin/qingyu.mjs or by
// --import tsx), so tsx is registered here before the TypeScript worker is
// imported. Deno runs TypeScript itself.
import { existsSync } from "node:fs";

const built = new URL("./export-worker.js", import.meta.url);
if (existsSync(built)) {
  await import(built.href);
} else {
  if (!("Deno" in globalThis)) {
    const { register } = await import("tsx/esm/api");
    register();
  }
  await import("./export-worker.ts");
}
