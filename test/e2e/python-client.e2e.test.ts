import { execFileSync, spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";

const root = resolve(import.meta.dirname, "../..");
// Debian's interpreter carries python3-grpcio; the python3 first on PATH may not.
const python = "/usr/bin/python3";
const hasGrpc = spawnSync(python, ["-c", "import grpc, google.protobuf"]).status === 0 && spawnSync("protoc", ["--version"]).status === 0;

// CI installs python3-grpcio, python3-protobuf and protobuf-compiler (.ci/run), so there it must run.
describe.skipIf(!hasGrpc && !process.env.CI)("a Python grpcio client given only proto/", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ log: { level: "warn" }, agents: [{ id: "echo", provider: "echo", model: "echo-1" }], plugins: { dirs: [] } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("runs a multi-turn session, a checkpoint and a stream", () => {
    const gen = tempDir("qingyu-py-");
    execFileSync("protoc", [
      "-I",
      join(root, "proto"),
      `--python_out=${gen}`,
      "qingyu/agent/v1/agent.proto",
      "qingyu/agent/v1/session.proto",
      "qingyu/agent/v1/event.proto",
    ]);
    const out = execFileSync(python, [join(root, "examples/python/multi_turn.py"), `127.0.0.1:${server.grpcPort}`], {
      env: { ...process.env, PYTHONPATH: gen },
      encoding: "utf8",
    });
    expect(out).toContain("answer: [history=2] second turn from python");
    expect(out).toContain("stale version: ABORTED STALE_VERSION");
    expect(out).toMatch(/stream: started \d+ deltas completed/);
  });
});
