import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.ts";
import { AddressError, localAddress, serverAddress } from "../../src/cli/server-address.mjs";

const dir = mkdtempSync(join(tmpdir(), "qingyu-address-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe("serverAddress (where qingyu health and reload find the server)", () => {
  it("without a config: 127.0.0.1 on PORT, else 50051", async () => {
    expect(await serverAddress(undefined, {})).toBe("127.0.0.1:50051");
    expect(await serverAddress(undefined, { PORT: "6100" })).toBe("127.0.0.1:6100");
  });

  it("reads the config's host and port, with ${VAR} in them, PORT winning as it does for serve", async () => {
    const path = file("a.yaml", "server:\n  host: ${HOST:-0.0.0.0}\n  port: ${GRPC_PORT:-7000}\n");
    for (const env of [{}, { GRPC_PORT: "7001" }, { PORT: "7002" }, { HOST: "127.0.0.2" }]) {
      // The same address serve would bind, as loadConfig reads it.
      const { server } = loadConfig(path, env).config;
      expect(await serverAddress(path, env)).toBe(localAddress(server.host, server.port));
    }
    expect(await serverAddress(path, {})).toBe("127.0.0.1:7000");
    expect(await serverAddress(path, { HOST: "127.0.0.2", PORT: "7002" })).toBe("127.0.0.2:7002");
    expect(await serverAddress(file("b.json", JSON.stringify({ server: { port: 7003 } })), {})).toBe("127.0.0.1:7003");
  });

  it("reaches every-interface binds on loopback and brackets an IPv6 host", () => {
    expect(localAddress("0.0.0.0", 1)).toBe("127.0.0.1:1");
    expect(localAddress("::", 1)).toBe("127.0.0.1:1");
    expect(localAddress("::1", 1)).toBe("[::1]:1");
    expect(localAddress("10.0.0.5", 1)).toBe("10.0.0.5:1");
  });

  it("a port picked at start, an unreadable file or an unset variable is an AddressError saying what to do", async () => {
    await expect(serverAddress(file("c.yaml", "server: { port: 0 }\n"), {})).rejects.toThrow(
      new AddressError("server.port is 0 (the server picks a free port at start): give --address HOST:PORT"),
    );
    await expect(serverAddress(join(dir, "none.yaml"), {})).rejects.toThrow(/^cannot read config file .*none\.yaml/);
    await expect(serverAddress(file("d.yaml", "server: { port: '${NOPE}' }\n"), {})).rejects.toThrow(/server\.port: environment variable NOPE is not set/);
    await expect(serverAddress(undefined, { PORT: "x" })).rejects.toThrow('PORT ("x") is not a port number: give --address HOST:PORT');
  });
});
