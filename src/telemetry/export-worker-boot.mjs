// The export worker's entry. On Node a worker does not get the main thread's
// TypeScript loader (whether registered by bin/qingyu.mjs or by --import tsx),
// so tsx is registered here before the TypeScript worker is imported. Deno
// runs TypeScript itself.
if (!("Deno" in globalThis)) {
  const { register } = await import("tsx/esm/api");
  register();
}
await import("./export-worker.ts");
