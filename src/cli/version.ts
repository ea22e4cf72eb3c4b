import { readFileSync } from "node:fs";

/** `qingyu --version`: the package's version and the runtime it runs on. */
export function versionLine(runtime: string, runtimeVersion: string): string {
  const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return `qingyu ${version} (${runtime} ${runtimeVersion})\n`;
}
