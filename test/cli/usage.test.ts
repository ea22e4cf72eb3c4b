import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { commandNames, isCommand, usage } from "../../src/cli/usage.ts";

describe("usage", () => {
  it("--help lists every command; one command's usage is its own", () => {
    const all = usage();
    for (const name of commandNames()) expect(all).toContain(`qingyu ${name}`);
    expect(usage("health")).toBe(
      "usage:\n  qingyu health [--config FILE] [--address HOST:PORT]\n" +
        "      Exits 0 when the server's gRPC health check says SERVING, 1 otherwise or when it does not\n" +
        "      answer within 3 s (for container health checks). The address defaults as for reload.\n",
    );
    expect(usage("serve")).not.toContain("qingyu check");
  });

  it("knows its commands and nothing else", () => {
    expect(commandNames()).toEqual(["serve", "check", "plugins", "reload", "health", "hash-key", "help", "version"]);
    expect(isCommand("health")).toBe(true);
    expect(isCommand("toString")).toBe(false);
  });

  it("the README's command table lists every command, and no other", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Command line"), readme.indexOf("\n## ", readme.indexOf("## Command line") + 1));
    const listed = [...section.matchAll(/^\| `qingyu ([a-z-]+)/gm)].map((m) => m[1]);
    expect(listed).toEqual(commandNames());
  });
});
