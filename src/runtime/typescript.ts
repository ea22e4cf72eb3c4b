import { runtimeName } from "./process.ts";

/**
 * Makes a TypeScript file importable: on Node, registers tsx (its ES module and
 * CommonJS hooks, as bin/qingyu.mjs does for src/) before the first one. The
 * server built to dist/ runs without tsx, so it is loaded only for a plugin
 * written in TypeScript (or one that imports TypeScript). A second call finds
 * the module loaded and does nothing; Deno runs TypeScript itself.
 */
export async function allowTypeScript(): Promise<void> {
  if (runtimeName !== "node") return;
  // tsx's root entry only registers its hooks and has no types: named through a variable so the compiler does not look for them.
  const tsx = "tsx";
  await import(tsx);
}

/** Whether an import failed for want of TypeScript support: a JavaScript plugin importing a .ts module (Node's ERR_UNKNOWN_FILE_EXTENSION). */
export function neededTypeScript(err: unknown): boolean {
  return (err as { code?: unknown })?.code === "ERR_UNKNOWN_FILE_EXTENSION" && /"\.[cm]?tsx?"/.test((err as Error).message);
}

/** Whether a module path is TypeScript. */
export function isTypeScript(path: string): boolean {
  return /\.[cm]?tsx?$/.test(path);
}
