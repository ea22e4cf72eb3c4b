import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPython } from "../support/python.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";

const root = resolve(import.meta.dirname, "../..");
// The run's globalSetup has checked for python3-grpcio and python3-protobuf: this always runs.
describe("a Python grpcio client with the committed stubs (clients/python)", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ log: { level: "warn" }, agents: [{ id: "echo", provider: "echo", model: "echo-1" }], plugins: { dirs: [] } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("runs a multi-turn session, a checkpoint and a stream", async () => {
    const out = await runPython([join(root, "examples/python/multi_turn.py"), `127.0.0.1:${server.grpcPort}`], join(root, "clients/python"));
    expect(out).toContain("answer: [history=2] second turn from python");
    expect(out).toContain("stale version: ABORTED STALE_VERSION");
    expect(out).toMatch(/stream: started \d+ deltas completed/);
  });
});
