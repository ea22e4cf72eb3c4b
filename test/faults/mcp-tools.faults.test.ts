// An MCP server that dies mid-call, through the real server process: the call gets a tool
// error at once (not at its timeout), the run answers, the dead server's children are killed,
// and the next call starts the server again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { EventLog, isRunning, startHttpFixture, stdioFixture, type HttpFixture } from "../fixtures/mcp/start.ts";
import { TestClient } from "../support/grpc-client.ts";
import { waitFor } from "../support/plugin-fixtures.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { crashLines } from "./support.ts";

const A = AgentService.method;

describe("MCP server faults", () => {
  const log = new EventLog();
  let http: HttpFixture;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    http = await startHttpFixture(log);
    server = await startServer({
      log: { level: "warn" },
      plugins: { dirs: [] },
      // A timeout far beyond what the test waits: an answer must come from noticing the death.
      tools: { mcp: { local: stdioFixture(log, { timeoutMs: 120_000 }), remote: { url: http.url, timeoutMs: 120_000 } } },
      agents: [{ id: "clerk", provider: "echo", model: "echo-1", tools: ["local__*", "remote__*"] }],
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
    await http?.kill();
  });

  it("a stdio server that exits mid-call (leaving a child on its stdout): a tool error at once, its child killed, a new server next call", async () => {
    const started = Date.now();
    const res = await client.unary(
      AgentService,
      A.execute,
      { agentId: "clerk", task: '!call local__die {"orphan":true}\nstill there?' },
      { timeoutMs: 30_000 },
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(res.result!.toolCalls[0]!.outcome).toBe(ToolOutcome.ERROR);
    expect(res.result!.toolCalls[0]!.output).toContain('MCP server "local"');
    expect(res.result!.success).toBe(true);
    const orphan = (await log.waitFor("child")).child!;
    await waitFor("the dead server's child killed", () => (!isRunning(orphan) ? true : undefined), 10_000);
    const next = await client.unary(AgentService, A.execute, { agentId: "clerk", task: '!call local__echo {"text":"back"}\n?' });
    expect(next.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.OK, output: "back" });
  });

  it("a streamable HTTP server that dies mid-call: a tool error at once, and the call after its restart succeeds", async () => {
    const port = http.port;
    const started = Date.now();
    const res = await client.unary(AgentService, A.execute, { agentId: "clerk", task: "!call remote__die {}\nstill there?" }, { timeoutMs: 30_000 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(res.result!.toolCalls[0]!.outcome).toBe(ToolOutcome.ERROR);
    await http.kill();
    http = await startHttpFixture(log, port);
    const next = await client.unary(AgentService, A.execute, { agentId: "clerk", task: '!call remote__echo {"text":"back"}\n?' });
    expect(next.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.OK, output: "back" });
  });
});
