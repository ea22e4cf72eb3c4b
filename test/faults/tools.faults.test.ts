// Tools that misbehave, and a model that never stops calling them: the run always ends, with a
// result where a limit was reached, and the server keeps serving. Cancel reaches a running tool
// within 100 ms. (MCP servers that die mid-call: mcp-tools.faults.test.ts.)
import * as grpc from "@grpc/grpc-js";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, type ExecuteStreamResponse } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { startToolServer, type ToolServer } from "../fixtures/tool-service/start.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { projectDir, publicApi, removeProjectDirs, writeFiles } from "../support/plugin-fixtures.ts";
import { serveFile, type ServerProcess } from "../support/server-process.ts";
import { crashLines, expectServing, rssMiB } from "./support.ts";

const A = AgentService.method;
const api = JSON.stringify(publicApi);

function plugins(marker: string): Record<string, string> {
  const tool = (name: string, body: string) => `import { definePlugin } from ${api};
import { writeFileSync } from "node:fs";
export default definePlugin({ name: ${JSON.stringify(name)}, kind: "tool", setup: () => ({
  name: ${JSON.stringify(name)}, description: "", inputSchema: { type: "object" },
  execute: ${body},
}) });
`;
  return {
    // Never settles and never looks at its signal.
    "plugins/deaf.mjs": tool("deaf", "() => new Promise(() => {})"),
    "plugins/thrower.mjs": tool("thrower", `() => { throw new TypeError("cannot read properties of undefined (reading 'id')"); }`),
    "plugins/huge.mjs": tool("huge", `() => "x".repeat(50 * 1024 * 1024)`),
    "plugins/counter.mjs": tool("counter", "(() => { let n = 0; return () => ++n; })()"),
    // Stamps the moment its signal fired, so the test can measure cancel → tool.
    "plugins/listener.mjs": tool(
      "listener",
      `(_args, ctx) => new Promise((_, reject) => ctx.signal.addEventListener("abort", () => { writeFileSync(${JSON.stringify(marker)}, String(Date.now())); reject(ctx.signal.reason); }))`,
    ),
  };
}

describe("tool faults", () => {
  let server: ServerProcess;
  let client: TestClient;
  let backend: ToolServer;
  let marker: string;

  beforeAll(async () => {
    const dir = projectDir();
    marker = join(dir, "aborted-at");
    writeFiles(dir, plugins(marker));
    backend = await startToolServer("node");
    const config = {
      server: { host: "127.0.0.1" },
      log: { level: "warn" },
      tools: {
        plugins: ["deaf", "thrower", "huge", "counter", "listener"],
        backends: { files: { address: backend.address } },
        maxOutputBytes: 64 * 1024,
        abandonAfterMs: 300,
      },
      sessions: { store: "memory" },
      agents: [
        { id: "clerk", provider: "echo", model: "echo-1", tools: ["*"], limits: { toolTimeoutMs: 500 } },
        { id: "looper", provider: "echo", model: "echo-1", tools: ["counter"], limits: { maxSteps: 1000, maxToolCalls: 25 } },
      ],
    };
    writeFiles(dir, { "config.json": JSON.stringify(config) });
    server = await serveFile(join(dir, "config.json"), ["--port", "0", "--http-port", "0"]);
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
    await backend?.stop();
    removeProjectDirs();
  });

  it("a tool that hangs ignoring its signal is timed out, abandoned after the grace, and the run answers", async () => {
    const started = Date.now();
    const res = await client.unary(AgentService, A.execute, { agentId: "clerk", task: "!call deaf {}\nstill there?" }, { timeoutMs: 10_000 });
    const took = Date.now() - started;
    expect(res.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.ABANDONED });
    expect(res.result!.output).toContain("[deaf] the tool timed out after 500 ms and did not stop within 300 ms");
    // toolTimeoutMs (500) + abandonAfterMs (300), plus the call's own cost.
    expect(took).toBeGreaterThanOrEqual(800);
    expect(took).toBeLessThan(3000);
    // With a deadline shorter than the tool's timeout, the run still ends before the deadline, with a result.
    const bounded = await client.unary(AgentService, A.execute, { agentId: "clerk", task: "!call deaf {}\nagain?" }, { timeoutMs: 400 });
    expect(bounded.result!.finishReason).toBe("deadline");
    expect(bounded.result!.toolCalls[0]!.outcome).toBe(ToolOutcome.ABANDONED);
    await expectServing(server, "clerk");
  });

  it("a tool that throws is a tool error the model reads; the run and the server go on", async () => {
    const res = await client.unary(AgentService, A.execute, { agentId: "clerk", task: "!call thrower {}\nok?" });
    expect(res.result!.success).toBe(true);
    expect(res.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.ERROR, output: "cannot read properties of undefined (reading 'id')" });
  });

  it("a tool returning 50 MB: the model, the client and the session get a bounded output with a note", async () => {
    const { session } = await client.unary(SessionService, SessionService.method.createSession, { userId: "u", agentId: "clerk" });
    const res = await client.unary(AgentService, A.execute, { agentId: "clerk", sessionId: session!.sessionId, userId: "u", task: "!call huge {}\nsize?" });
    const record = res.result!.toolCalls[0]!;
    expect(record.outcome).toBe(ToolOutcome.OK);
    expect(Buffer.byteLength(record.output)).toBeLessThanOrEqual(64 * 1024);
    expect(record.output).toMatch(/\[output truncated: the tool returned 52428800 bytes; the limit \(tools.maxOutputBytes\) is 65536\]$/);
    const stored = await client.unary(SessionService, SessionService.method.getSession, { sessionId: session!.sessionId, userId: "u" });
    expect(Buffer.byteLength(stored.session!.messages[2]!.content)).toBeLessThanOrEqual(64 * 1024);
    // A backend's 50 MB answer is refused on the wire: a tool error, not 50 MB held.
    const remote = await client.unary(AgentService, A.execute, { agentId: "clerk", task: '!call files__big {"bytes":52428800}\nsize?' });
    expect(remote.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.ERROR });
    expect(remote.result!.toolCalls[0]!.output).toMatch(/RESOURCE_EXHAUSTED/);
    expect(rssMiB(server.child.pid!)).toBeLessThan(600);
  });

  it("a model that calls tools forever is stopped by maxToolCalls, and by maxSteps", async () => {
    const res = await client.unary(AgentService, A.execute, { agentId: "looper", task: "!loop counter {}\nforever" });
    expect(res.result!.finishReason).toBe("max_tool_calls");
    expect(res.result!.toolCalls.filter((c) => c.outcome === ToolOutcome.OK)).toHaveLength(25);
    const steps = await client.unary(AgentService, A.execute, { agentId: "looper", task: "!loop counter {}\nforever", options: { maxSteps: 7 } });
    expect(steps.result!.finishReason).toBe("max_steps");
    expect(steps.result!.steps).toBe(7);
  });

  it("cancel mid-tool reaches the tool's signal within 100 ms", async () => {
    for (let i = 0; i < 5; i++) {
      const call = client.stream(AgentService, A.executeStream, { agentId: "clerk", task: "!call listener {}" });
      const ended = statusOf(client.collect(call));
      await new Promise<void>((res) => call.on("data", (m: ExecuteStreamResponse) => m.event.case === "toolCall" && res()));
      // The tool_call event is sent as the tool starts: give it a moment to be running, then cancel.
      await new Promise((r) => setTimeout(r, 20));
      const cancelledAt = Date.now();
      call.cancel();
      expect(grpc.status[(await ended).code]).toBe("CANCELLED");
      const deadline = Date.now() + 5000;
      while (!existsSync(marker) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const abortedAt = Number((await import("node:fs")).readFileSync(marker, "utf8"));
      expect(abortedAt - cancelledAt).toBeLessThan(100);
      statSync(marker);
      (await import("node:fs")).rmSync(marker);
    }
  });
});
