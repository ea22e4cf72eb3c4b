// Hot reload through the real server process: SIGHUP, AdminService.Reload and
// `qingyu reload`. A user middleware stamps each result with the version from its
// options and a mark from its source file, so a result shows which generation ran it.
import * as grpc from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AdminService } from "../../src/gen/qingyu/agent/v1/admin_pb.ts";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { freePort, logged, projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { runCli, serveFile, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;
afterAll(removeProjectDirs);

const stampSource = (mark: string) => `import { z } from "zod";
import { definePlugin, type RunEvent } from ${JSON.stringify(publicApi)};
const MARK: string = ${JSON.stringify(mark)};
export default definePlugin({
  name: "stamp",
  kind: "middleware",
  configSchema: z.strictObject({ version: z.string().regex(/^v\\d+$/, "expected v<number>") }),
  setup({ options }) {
    return {
      name: "stamp",
      async *process(_ctx, next): AsyncIterable<RunEvent> {
        for await (const e of next()) {
          yield e.type === "completed" ? { type: "completed", result: { ...e.result, metadata: { ...e.result.metadata, stamp: options.version, mark: MARK } } } : e;
        }
      },
    };
  },
});
`;

/** A project folder with the stamp plugin and a config using it; `write` rewrites that config. */
function stampProject(version: string, extra: Record<string, unknown> = {}) {
  const dir = projectDir();
  const config = join(dir, "config.json");
  const write = (v: string, more: Record<string, unknown> = {}) =>
    writeFileSync(
      config,
      JSON.stringify({
        // info: the "reloaded" line is what tells a test the new generation is in.
        log: { level: "info" },
        pipeline: [{ plugin: "stamp", options: { version: v } }],
        providers: { slow: { plugin: "echo", options: { tokenDelayMs: 100 } }, fast: { plugin: "echo" } },
        agents: [
          { id: "slow", provider: "slow", model: "m" },
          { id: "fast", provider: "fast", model: "m" },
        ],
        plugins: { dirs: ["plugins"] },
        server: { host: "127.0.0.1" },
        ...extra,
        ...more,
      }),
    );
  writeFiles(dir, { "plugins/stamp.ts": stampSource("file-1") });
  write(version);
  return { dir, config, write, pluginFile: join(dir, "plugins/stamp.ts") };
}

async function started(project: ReturnType<typeof stampProject>): Promise<{ server: ServerProcess; client: TestClient }> {
  const server = await serveFile(project.config, ["--port", "0", "--http-port", "0"]);
  return { server, client: new TestClient(server.grpcPort) };
}

async function stampOf(client: TestClient): Promise<{ stamp?: string; mark?: string }> {
  const res = await client.unary(AgentService, A.execute, { agentId: "fast", task: "which version?" });
  return { stamp: res.result?.metadata.stamp, mark: res.result?.metadata.mark };
}

/** SIGHUP, then the log line of the outcome (the n-th "reloaded" or "reload failed" line). */
async function sighup(server: ServerProcess, msg: "reloaded" | "reload failed; the running config and plugins stay"): Promise<Record<string, unknown>> {
  const before = logged(server, msg).length;
  server.child.kill("SIGHUP");
  return waitFor(`"${msg}" log line`, () => logged(server, msg)[before]);
}

describe("hot reload", () => {
  it("SIGHUP under load: calls in flight finish on the old pipeline, calls after the reload get the new one, none fail", async () => {
    const project = stampProject("v1");
    const { server, client } = await started(project);
    try {
      const task = Array.from({ length: 20 }, (_, i) => `w${i}`).join(" ");
      let finished = 0;
      const calls = Array.from({ length: 20 }, () => {
        const call = client.stream(AgentService, A.executeStream, { agentId: "slow", task });
        let deltas = 0;
        call.on("data", (m) => void (m.event.case === "delta" && deltas++));
        const done = client.collect(call).finally(() => finished++);
        return { done, deltas: () => deltas };
      });
      // Every call is inside generation 1 once its first token has arrived.
      await waitFor("a token on every call", () => (calls.every((c) => c.deltas() > 0) ? true : undefined));

      project.write("v2");
      const reloaded = await sighup(server, "reloaded");
      expect(reloaded).toMatchObject({ generation: 2, pipeline: ["stamp"], level: 30 });
      // The swap happened while all 20 were still streaming.
      expect(finished).toBe(0);
      const after = await Promise.all(Array.from({ length: 5 }, () => stampOf(client)));
      expect(after.map((s) => s.stamp)).toEqual(["v2", "v2", "v2", "v2", "v2"]);
      // Both generations served at once: the new calls are done, the old ones are not.
      expect(finished).toBe(0);

      const results = await Promise.all(calls.map((c) => c.done));
      for (const messages of results) {
        const last = messages.at(-1)!;
        expect(last.event.case).toBe("completed");
        if (last.event.case !== "completed") continue;
        expect(last.event.value.output).toBe(`[history=0] ${task}`);
        expect(last.event.value.metadata.stamp).toBe("v1");
      }
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("an edited plugin file is imported afresh on SIGHUP", async () => {
    const project = stampProject("v1");
    const { server, client } = await started(project);
    try {
      expect(await stampOf(client)).toEqual({ stamp: "v1", mark: "file-1" });
      writeFileSync(project.pluginFile, stampSource("file-2"));
      await sighup(server, "reloaded");
      expect(await stampOf(client)).toEqual({ stamp: "v1", mark: "file-2" });
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("a reload with options the plugin rejects keeps the old pipeline serving and logs why at error level", async () => {
    const project = stampProject("v1");
    const { server, client } = await started(project);
    try {
      expect(await stampOf(client)).toEqual({ stamp: "v1", mark: "file-1" });
      project.write("version-two");
      const failed = await sighup(server, "reload failed; the running config and plugins stay");
      expect(failed.level).toBe(50);
      expect(failed.err).toContain(`pipeline.0: invalid options for plugin "stamp" (${project.pluginFile})`);
      expect(failed.err).toContain("pipeline.0.options.version: expected v<number>");
      expect(await stampOf(client)).toEqual({ stamp: "v1", mark: "file-1" });

      // Fixed: the next reload goes through, and the failed one used up no generation number.
      project.write("v2");
      expect(await sighup(server, "reloaded")).toMatchObject({ generation: 2 });
      expect(await stampOf(client)).toEqual({ stamp: "v2", mark: "file-1" });
    } finally {
      client.close();
      await server.stop();
    }
  });

  // Like the file-edit case, this needs the reload to read the plugin file afresh (see the report on tsx).
  it("a reload after a syntax error was saved into the plugin file keeps the old pipeline serving and logs why", async () => {
    const project = stampProject("v1");
    const { server, client } = await started(project);
    try {
      expect(await stampOf(client)).toEqual({ stamp: "v1", mark: "file-1" });
      project.write("v2");
      writeFileSync(project.pluginFile, `${stampSource("file-2")}\nexport const broken = {;\n`);
      const failed = await sighup(server, "reload failed; the running config and plugins stay");
      expect(failed.level).toBe(50);
      expect(failed.err).toContain(`${project.pluginFile}: cannot be loaded:`);
      expect(await stampOf(client)).toEqual({ stamp: "v1", mark: "file-1" });
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("AdminService.Reload returns the generation and pipeline, FAILED_PRECONDITION when it fails; `qingyu reload` prints it", async () => {
    const project = stampProject("v1");
    const { server, client } = await started(project);
    const reload = () => client.unary(AdminService, AdminService.method.reload, {});
    try {
      project.write("v2", { pipeline: ["validation", { plugin: "stamp", options: { version: "v2" } }] });
      const res = await reload();
      expect(res.generation).toBe(2n);
      expect(res.pipeline).toEqual(["validation", "stamp"]);
      expect(res.warnings).toEqual([]);
      expect((await stampOf(client)).stamp).toBe("v2");

      project.write("v3", { pipeline: ["validation", { plugin: "stamp", options: { version: "three" } }] });
      const failed = await statusOf(reload());
      expect(failed.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(failed.details).toContain("reload failed; the running config and plugins stay");
      expect(failed.details).toContain("pipeline.1.options.version: expected v<number>");
      expect((await stampOf(client)).stamp).toBe("v2");
      const cliFailed = await runCli(["reload", "--address", `127.0.0.1:${server.grpcPort}`]);
      expect(cliFailed.code).toBe(1);
      expect(cliFailed.stderr).toContain("reload failed:");
      expect(cliFailed.stderr).toContain("pipeline.1.options.version");

      project.write("v3", { pipeline: [{ plugin: "stamp", options: { version: "v3" } }, "validation"] });
      const cli = await runCli(["reload", "--address", `127.0.0.1:${server.grpcPort}`]);
      expect(cli.stderr).toBe("");
      expect(cli.code).toBe(0);
      expect(cli.stdout).toBe("reloaded: generation 3, pipeline: stamp → validation\n");
      expect((await stampOf(client)).stamp).toBe("v3");

      // ListPlugins describes the running generation: the user's plugin from its file, in use.
      const listed = await client.unary(AdminService, AdminService.method.listPlugins, {});
      expect(listed.generation).toBe(3n);
      expect(listed.pipeline).toEqual(["stamp", "validation"]);
      const stamp = listed.plugins.find((p) => p.name === "stamp");
      expect(stamp).toMatchObject({ kind: "middleware", enabled: true, inUse: true });
      expect(stamp!.source).toMatch(/stamp\.ts$/);
      expect(listed.plugins.find((p) => p.name === "cache")).toMatchObject({ source: "builtin", inUse: false });
    } finally {
      client.close();
      await server.stop();
    }
  });

  // A supervisor that reloads as soon as it sees "listening" must not kill the server
  // (SIGHUP's default action). Three servers at once, because a lost race is not certain.
  it("a SIGHUP sent as soon as the listening line is out reloads instead of killing the server", async () => {
    const projects = [stampProject("v1"), stampProject("v1"), stampProject("v1")];
    const servers = await Promise.all(
      projects.map(async (project) => {
        const server = await serveFile(project.config, ["--port", "0", "--http-port", "0"]);
        server.child.kill("SIGHUP");
        return server;
      }),
    );
    try {
      for (const server of servers) {
        const outcome = await Promise.race([
          server.exited.then((code) => `exited (${code})`),
          waitFor("reloaded", () => (logged(server, "reloaded").length ? "reloaded" : undefined)),
        ]);
        expect(outcome).toBe("reloaded");
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });

  it("a changed server.port is reported as needing a restart, and the server keeps its port", async () => {
    const [port, otherPort] = [await freePort(), await freePort()];
    // No --port flag here: it would override server.port on every reload too.
    const project = stampProject("v1", { server: { host: "127.0.0.1", port, httpPort: null } });
    const server = await serveFile(project.config);
    const client = new TestClient(server.grpcPort);
    try {
      expect(server.grpcPort).toBe(port);
      project.write("v2", { server: { host: "127.0.0.1", port: otherPort, httpPort: null } });
      const res = await client.unary(AdminService, AdminService.method.reload, {});
      expect(res.warnings).toEqual(['"server" changed; it takes effect only after a restart']);
      // The rest of the reload applied; the port did not move.
      expect((await stampOf(client)).stamp).toBe("v2");
      const refused = await new Promise<string>((res) => {
        const socket = connect(otherPort, "127.0.0.1");
        socket.once("connect", () => (socket.destroy(), res("connected")));
        socket.once("error", (err: NodeJS.ErrnoException) => res(err.code ?? String(err)));
      });
      expect(refused).toBe("ECONNREFUSED");
      await waitFor("the restart warning in the log", () => (logged(server, res.warnings[0]!).length ? true : undefined));
    } finally {
      client.close();
      await server.stop();
    }
  });
});
