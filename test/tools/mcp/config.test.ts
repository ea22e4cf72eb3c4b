import { describe, expect, it } from "vitest";
import { McpServerSchema } from "../../../src/tools/mcp/config.ts";

function issues(input: unknown): string[] {
  const parsed = McpServerSchema.safeParse(input);
  if (parsed.success) throw new Error("expected the config to be refused");
  return parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

describe("McpServerSchema", () => {
  it("takes a stdio server and fills in the per-call timeout", () => {
    expect(McpServerSchema.parse({ command: "npx", args: ["-y", "server"], env: { TOKEN: "t" }, cwd: "tools", allow: ["get_*"] })).toEqual({
      command: "npx",
      args: ["-y", "server"],
      env: { TOKEN: "t" },
      cwd: "tools",
      allow: ["get_*"],
      timeoutMs: 60_000,
    });
  });

  it("takes a streamable HTTP server", () => {
    expect(
      McpServerSchema.parse({ url: "https://mcp.example.com/mcp", headers: { authorization: "Bearer x" }, timeoutMs: 5000, idempotent: ["read_*"] }),
    ).toEqual({
      url: "https://mcp.example.com/mcp",
      headers: { authorization: "Bearer x" },
      timeoutMs: 5000,
      idempotent: ["read_*"],
    });
  });

  it("refuses a server that is neither stdio nor HTTP", () => {
    expect(issues({ allow: ["x"] })).toEqual([': give either "command" (a stdio server) or "url" (a streamable HTTP server)']);
  });

  it("refuses a server that is both, naming what it found", () => {
    expect(issues({ command: "node", args: ["s.js"], url: "http://localhost:1/mcp" })).toEqual([
      ": a server is either stdio (command, args, env, cwd) or streamable HTTP (url, headers), not both: found command, args, url",
    ]);
    expect(issues({ url: "http://localhost:1/mcp", env: { A: "b" } })).toEqual([
      ": a server is either stdio (command, args, env, cwd) or streamable HTTP (url, headers), not both: found env, url",
    ]);
  });

  it("refuses unknown keys, a non-HTTP URL and a bad timeout", () => {
    expect(issues({ command: "node", comand: "typo" })).toEqual([': Unrecognized key: "comand"']);
    expect(issues({ url: "ftp://example.com/mcp" })).toEqual(["url: an http:// or https:// URL"]);
    expect(issues({ command: "node", timeoutMs: 0 }).map((i) => i.split(":")[0])).toEqual(["timeoutMs"]);
  });
});
