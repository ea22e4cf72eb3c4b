// MCP servers as agents' tools through the real server process (Node, or Deno with
// QINGYU_E2E_RUNTIME=deno): one over stdio the server starts and owns, one over streamable HTTP
// that is killed and restarted mid-session; cancel reaching the MCP server; reload and shutdown
// killing a stdio server with its children.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, type ExecuteStreamResponse } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { EventLog, isRunning, startHttpFixture, stdioFixture, type HttpFixture } from "../fixtures/mcp/start.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { logged, waitFor } from "../support/plugin-fixtures.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;

describe("MCP servers through the server", () => {
  const log = new EventLog();
  let http: HttpFixture;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    http = await startHttpFixture(log);
    server = await startServer({
      log: { level: "info" },
      plugins: { dirs: [] },
      tools: { mcp: { local: stdioFixture(log), remote: { url: http.url, allow: ["echo", "add"] } } },
      agents: [{ id: "clerk", provider: "echo", model: "echo-1", tools: ["local__*", "remote__*"] }],
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    await http?.kill();
  });

  const run = (task: string, sessionId = "", userId = "") => client.unary(AgentService, A.execute, { agentId: "clerk", task, sessionId, userId });

  it("calls a stdio server's tool, whose structured content is the output", async () => {
    const res = await run('!call local__add {"a":2,"b":3}\nsum?');
    expect(res.result!.toolCalls[0]).toMatchObject({ name: "local__add", outcome: ToolOutcome.OK, output: '{"sum":5}' });
    expect(res.result!.output).toBe('[history=0] sum?\n[local__add] {"sum":5}');
  });

  it("keeps a session going across an HTTP server killed and restarted on the same port", async () => {
    const { session } = await client.unary(SessionService, SessionService.method.createSession, { userId: "u", agentId: "clerk" });
    const sid = session!.sessionId;
    const first = await run('!call remote__echo {"text":"before"}\none', sid, "u");
    expect(first.result!.toolCalls[0]!.output).toBe("before");
    const initialized = log.of("initialized").length;
    const port = http.port;
    await http.kill();
    http = await startHttpFixture(log, port);
    const second = await run('!call remote__echo {"text":"after"}\ntwo', sid, "u");
    expect(second.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.OK, output: "after" });
    // The restarted server forgot the session: one 404, one new session, the call retried once.
    expect(log.of("unknown-session").length).toBeGreaterThanOrEqual(1);
    expect(log.of("initialized").length).toBe(initialized + 1);
    expect(second.result!.output).toBe("[history=4] two\n[remote__echo] after");
  });

  it("cancel mid-tool reaches the MCP server as notifications/cancelled", async () => {
    const call = client.stream(AgentService, A.executeStream, { agentId: "clerk", task: '!call local__slow {"ms":60000,"progress":false}' });
    const ended = statusOf(client.collect(call));
    await new Promise<void>((res) => call.on("data", (m: ExecuteStreamResponse) => m.event.case === "toolCall" && res()));
    await log.waitFor("slow-started");
    call.cancel();
    expect((await ended).code).toBe(1);
    await log.waitFor("cancelled", (e) => e.transport === "stdio");
    expect(log.of("slow-finished")).toEqual([]);
  });

  it("reload kills the stdio server with its children and the next call starts a new one; so does shutdown", async () => {
    const spawned = await run("!call local__spawn_child {}\nchild?");
    const grandchild = Number(spawned.result!.toolCalls[0]!.output);
    const old = log
      .of("start")
      .filter((e) => e.transport === "stdio")
      .at(-1)!.pid;
    expect(isRunning(old) && isRunning(grandchild)).toBe(true);
    const before = logged(server, "reloaded").length;
    server.child.kill("SIGHUP");
    await waitFor("the reload", () => logged(server, "reloaded")[before], 20_000).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${server.lines.filter((l) => /reload/.test(l)).join("\n")}\n${server.stderr()}`);
    });
    await waitFor("the old stdio server and its child gone", () => (!isRunning(old) && !isRunning(grandchild) ? true : undefined), 10_000);
    const after = await run('!call local__echo {"text":"new server"}\nhi');
    expect(after.result!.toolCalls[0]!.output).toBe("new server");
    const current = log
      .of("start")
      .filter((e) => e.transport === "stdio")
      .at(-1)!.pid;
    expect(current).not.toBe(old);
    expect(await server.stop()).toBe(0);
    expect(isRunning(current)).toBe(false);
  });
});
