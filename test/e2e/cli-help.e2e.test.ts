// What the bin answers a newcomer who asks it: --help (per command too), --version,
// an unknown command or option.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/server-process.ts";

const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

describe("qingyu --help, -h, help, --version", () => {
  it("--help, -h and help list every command, exit 0, and start nothing", async () => {
    for (const args of [["--help"], ["-h"], ["help"]]) {
      const { code, stdout, stderr } = await runCli(args);
      expect(stderr).toBe("");
      expect(code).toBe(0);
      for (const command of ["serve", "check", "plugins", "reload", "health", "hash-key", "help", "version"]) expect(stdout).toContain(`qingyu ${command}`);
    }
  });

  it("each command answers -h and --help with its own usage", async () => {
    for (const command of ["serve", "check", "plugins", "reload", "health", "hash-key"]) {
      const { code, stdout, stderr } = await runCli([command, command === "health" ? "-h" : "--help"]);
      expect(stderr).toBe("");
      expect(code).toBe(0);
      expect(stdout.startsWith(`usage:\n  qingyu ${command}`)).toBe(true);
      expect(stdout).not.toContain("qingyu version");
    }
    expect((await runCli(["help", "reload"])).stdout).toContain("qingyu reload [--config FILE] [--address HOST:PORT] [--token TOKEN]");
  });

  it("--version, -v and version print the package's version and the runtime", async () => {
    for (const args of [["--version"], ["-v"], ["version"]]) {
      const { code, stdout } = await runCli(args);
      expect(stdout).toMatch(new RegExp(`^qingyu ${version.replaceAll(".", "\\.")} \\((node|deno) v?\\d+\\.\\d+\\.\\d+.*\\)\\n$`));
      expect(code).toBe(0);
    }
  });

  it("an unknown command or option exits 2 naming it, with the usage", async () => {
    const unknown = await runCli(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.startsWith('qingyu: unknown command "frobnicate"\nusage:\n')).toBe(true);
    const option = await runCli(["reload", "--adress", "127.0.0.1:1"]);
    expect(option.code).toBe(2);
    expect(option.stderr).toContain("'--adress'");
    expect(option.stderr).toContain("usage:\n  qingyu reload");
    const health = await runCli(["health", "--adress", "127.0.0.1:1"]);
    expect(health.code).toBe(2);
    expect(health.stderr).toContain("'--adress'");
  });
});
