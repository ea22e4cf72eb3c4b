// `qingyu health` (the container's probe) and `qingyu reload`: where they find the
// server (the config's port, PORT, --address), and that the probe stays light.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/plugin-fixtures.ts";
import { runCli, runtime, serveFile, startServer, writeConfig, type ServerProcess } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";

describe("qingyu health (the container health check)", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ log: { level: "warn" }, plugins: { dirs: [] } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("exits 0 and prints SERVING for a serving server", async () => {
    const { code, stdout, stderr } = await runCli(["health", "--address", `127.0.0.1:${server.grpcPort}`]);
    expect(stderr).toBe("");
    expect(stdout).toBe("SERVING\n");
    expect(code).toBe(0);
  });

  it("exits 1 with the reason when nothing answers", async () => {
    const { code, stdout, stderr } = await runCli(["health", "--address", "127.0.0.1:1"]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe("qingyu: health check failed: cannot reach 127.0.0.1:1: ECONNREFUSED\n");
  });

  it("exits 1 naming what it met when the port is not a gRPC server's (the HTTP/1.1 port)", async () => {
    const { code, stderr } = await runCli(["health", "--address", `127.0.0.1:${server.httpPort}`]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^qingyu: health check failed: /);
  });

  it.runIf(runtime === "node")("loads neither TypeScript, nor tsx, nor the server (a probe every few seconds must stay light)", async () => {
    // A module hook that refuses every TypeScript file and tsx itself: the probe must not need them.
    const dir = tempDir("qingyu-e2e-hooks-");
    writeFileSync(
      join(dir, "hooks.mjs"),
      `export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  if (/\\.[mc]?ts$/.test(resolved.url) || resolved.url.includes("/node_modules/tsx/")) throw new Error("the probe loaded " + resolved.url);
  return resolved;
}\n`,
    );
    writeFileSync(join(dir, "register.mjs"), `import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url);\n`);
    const config = writeConfig({ server: { port: server.grpcPort } });
    const { code, stdout, stderr } = await runCli(["health", "--config", config], { NODE_OPTIONS: `--import ${join(dir, "register.mjs")}` });
    expect(stderr).toBe("");
    expect(stdout).toBe("SERVING\n");
    expect(code).toBe(0);
    // The hook does refuse what it should: the full CLI from its TypeScript source cannot load under it.
    const full = await runCli(["check"], { NODE_OPTIONS: `--import ${join(dir, "register.mjs")}`, QINGYU_FROM_SOURCE: "1" });
    expect(full.code).not.toBe(0);
    expect(full.stderr).toContain("the probe loaded");
  });
});

describe("qingyu health and reload find the server where its config says", () => {
  let server: ServerProcess;
  let config: string;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    config = join(tempDir("qingyu-e2e-"), "server.yaml");
    // The port through ${VAR}, as a config shared by serve and the probes would say it.
    writeFileSync(config, `server:\n  host: 127.0.0.1\n  port: \${QINGYU_TEST_GRPC_PORT}\n  httpPort: 0\nlog: { level: warn }\nplugins: { dirs: [] }\n`);
    server = await serveFile(config, [], { QINGYU_TEST_GRPC_PORT: String(port) });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("serve bound the port the config names", () => {
    expect(server.grpcPort).toBe(port);
  });

  it("health --config asks the config's port, not 50051", async () => {
    const { code, stdout, stderr } = await runCli(["health", "--config", config], { QINGYU_TEST_GRPC_PORT: String(port) });
    expect(stderr).toBe("");
    expect(stdout).toBe("SERVING\n");
    expect(code).toBe(0);
  });

  it("PORT wins over the file for the probes, as it does for serve", async () => {
    const { code, stderr } = await runCli(["health", "--config", config], { QINGYU_TEST_GRPC_PORT: String(port), PORT: "1" });
    expect(code).toBe(1);
    expect(stderr).toBe("qingyu: health check failed: cannot reach 127.0.0.1:1: ECONNREFUSED\n");
    const noConfig = await runCli(["health"], { PORT: String(port) });
    expect(noConfig.stdout).toBe("SERVING\n");
    expect(noConfig.code).toBe(0);
  });

  it("reload --config reaches the server at the config's port", async () => {
    const { code, stdout, stderr } = await runCli(["reload", "--config", config], { QINGYU_TEST_GRPC_PORT: String(port) });
    expect(stderr).toBe("");
    expect(stdout).toBe("reloaded: generation 2, pipeline: logging → validation\n");
    expect(code).toBe(0);
  });

  it("a config whose port is 0, or a variable it needs that is not set, exits 2 saying to give --address", async () => {
    const zero = await runCli(["health", "--config", writeConfig({ server: { port: 0 } })]);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toBe("qingyu: server.port is 0 (the server picks a free port at start): give --address HOST:PORT\n");
    const unset = await runCli(["reload", "--config", config]);
    expect(unset.code).toBe(2);
    expect(unset.stderr).toBe(
      `qingyu: config file ${config}: server.port: environment variable QINGYU_TEST_GRPC_PORT is not set (the value says \${QINGYU_TEST_GRPC_PORT}): set it, or give a default with \${QINGYU_TEST_GRPC_PORT:-default}\n`,
    );
  });
});
