import { describe, expect, it } from "vitest";
import { BackendToolsSchema } from "../../../src/tools/backend/config.ts";

describe("BackendToolsSchema", () => {
  it("fills the defaults: plaintext, every tool, the agent's tool timeout, no headers", () => {
    expect(BackendToolsSchema.parse({ address: "billing.internal:50052" })).toEqual({
      address: "billing.internal:50052",
      tls: false,
      metadata: {},
    });
  });

  it("takes TLS as true or as PEM files, with a serverName", () => {
    expect(BackendToolsSchema.parse({ address: "[::1]:443", tls: true }).tls).toBe(true);
    const files = { ca: "ca.pem", cert: "client.pem", key: "client.key", serverName: "billing" };
    expect(BackendToolsSchema.parse({ address: "10.0.0.2:443", tls: files }).tls).toEqual(files);
  });

  it.each([
    [{ address: "billing" }, ["address"]],
    [{ address: "http://billing:80" }, ["address"]],
    [{ address: "b:1", tls: { cert: "client.pem" } }, ["tls", "key"]],
    [{ address: "b:1", tls: { ca: "ca.pem", caFile: "x" } }, ["tls"]],
    [{ address: "b:1", timeoutMs: 0 }, ["timeoutMs"]],
    [{ address: "b:1", metadata: { "grpc-timeout": "1S" } }, ["metadata", "grpc-timeout"]],
    [{ address: "b:1", metadata: { "token-bin": "x" } }, ["metadata", "token-bin"]],
    [{ address: "b:1", allow: [""] }, ["allow", 0]],
    [{ address: "b:1", port: 1 }, []],
  ])("refuses %j at %j", (config, path) => {
    const result = BackendToolsSchema.safeParse(config);
    expect(result.success).toBe(false);
    expect(result.error!.issues[0]!.path).toEqual(path);
  });
});
