import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll } from "vitest";

type Sdk = typeof import("@qingyu/plugin-api");
type SdkTesting = typeof import("@qingyu/plugin-api/testing");

/** A second, separately installed copy of the built SDK, as a plugin with its own node_modules has it. */
export interface SdkCopy {
  /** Its main entry ("@qingyu/plugin-api" of that copy). */
  sdk: Sdk;
  /** Its "./testing" entry. */
  testing: SdkTesting;
  /** The copy's package folder (…/node_modules/@qingyu/plugin-api), outside this repository. */
  dir: string;
}

const pkg = join(dirname(fileURLToPath(import.meta.url)), "../../packages/plugin-api");

/**
 * Installs packages/plugin-api (its built dist/ and package.json, what `npm
 * pack` ships) into a temporary node_modules outside the repository before
 * the suite's tests, imports it by file URL, and removes the folder after
 * them. Call at the top of a test file; read the getter inside tests.
 */
export function useSdkCopy(): () => SdkCopy {
  let root: string | undefined;
  let copy: SdkCopy | undefined;
  beforeAll(async () => {
    if (!existsSync(join(pkg, "dist", "index.js"))) throw new Error("packages/plugin-api is not built: run `node scripts/build-package.mjs plugin-api`");
    root = mkdtempSync(join(tmpdir(), "qingyu-sdk-copy-"));
    const dir = join(root, "node_modules", "@qingyu", "plugin-api");
    cpSync(join(pkg, "dist"), join(dir, "dist"), { recursive: true });
    cpSync(join(pkg, "package.json"), join(dir, "package.json"));
    const sdk = (await import(pathToFileURL(join(dir, "dist", "index.js")).href)) as Sdk;
    const testing = (await import(pathToFileURL(join(dir, "dist", "testing", "index.js")).href)) as SdkTesting;
    copy = { sdk, testing, dir };
  });
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });
  return () => {
    if (!copy) throw new Error("the SDK copy is made in beforeAll: read it inside a test");
    return copy;
  };
}
