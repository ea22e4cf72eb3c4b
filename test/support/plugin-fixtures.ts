// Shared by plugins.e2e and reload.e2e: fixture plugin folders in temp projects, and
// helpers to watch a server's log. Servers whose config file the test owns start
// with serveFile() from server-process.ts.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { ServerProcess } from "./server-process.ts";

const repo = resolve(import.meta.dirname, "../..");

/** What plugins import definePlugin from (outside this repository: "@qingyu/plugin-api"): the SDK as built, JavaScript. */
export const publicApi = pathToFileURL(join(repo, "packages/plugin-api/dist/index.js")).href;

const roots: string[] = [];

/**
 * A temp project folder, with node_modules/zod linked to ours so that fixture
 * plugins `import { z } from "zod"` the way a user's project would.
 */
export function projectDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "qingyu-plugin-e2e-"));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(join(repo, "node_modules/zod"), join(dir, "node_modules/zod"), "dir");
  roots.push(dir);
  return dir;
}

/** Removes every folder projectDir() made (afterAll). */
export function removeProjectDirs(): void {
  for (const dir of roots.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Writes `files` (path relative to `dir` → contents), making folders as needed. */
export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
}

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

/** The JSON log lines with this msg seen so far. */
export function logged(server: ServerProcess, msg: string): Record<string, unknown>[] {
  return server.lines.flatMap((line) => {
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      return entry.msg === msg ? [entry] : [];
    } catch {
      return [];
    }
  });
}

/** Polls until `check` returns a value (not undefined), or fails after `timeoutMs` (a bound on a hang: a loaded machine is slow). */
export async function waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The rows of `qingyu plugins`' table, by plugin name. */
export function pluginRows(stdout: string): Map<string, { kind: string; status: string; source: string }> {
  return new Map(
    stdout
      .split("\n")
      .map((line) => line.split(/ {2,}/))
      .filter((cells) => cells.length === 4)
      .map(([name, kind, status, source]) => [name!, { kind: kind!, status: status!, source: source! }]),
  );
}
