import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, startServer, type ServerProcess } from "../support/server-process.ts";

describe("qingyu health (the container health check)", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ log: { level: "warn" }, plugins: { dirs: [] } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("exits 0 and prints SERVING for a serving server", async () => {
    const { code, stdout } = await runCli(["health", "--address", `127.0.0.1:${server.grpcPort}`]);
    expect(stdout.trim()).toBe("SERVING");
    expect(code).toBe(0);
  });

  it("exits 1 with the reason when nothing answers", async () => {
    const { code, stderr } = await runCli(["health", "--address", "127.0.0.1:1"]);
    expect(code).toBe(1);
    expect(stderr).toContain("health check failed");
  });
});
