#!/usr/bin/env node
// Node cannot load TypeScript by itself: register tsx first, so the server and
// users' .ts plugins run from source with no build step. Deno needs none of this.
if (!("Deno" in globalThis)) {
  const { register } = await import("tsx/esm/api");
  register();
}
await import("../src/main.ts");
