// Agents that act, through the real server process (Node, or Deno with QINGYU_E2E_RUNTIME=deno):
// a tool plugin from a folder outside the repository, a backend's ToolService (Node and Python),
// typed step and tool events on gRPC and Connect, cancel reaching the tool, limits that return a
// partial result, structured output, a second turn over the stored tool turn, and a client built
// before any of this existed.
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, type ExecuteStreamResponse } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { EventService, EventType } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { startToolServer, type ToolServer } from "../fixtures/tool-service/start.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { runPython } from "../support/python.ts";
import { serveFile, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;
const api = JSON.stringify(publicApi);
const root = resolve(import.meta.dirname, "../..");

/** A tool plugin file as a user writes one: zod input, a context that carries the run's signal. */
function toolPlugins(markerDir: string): Record<string, string> {
  return {
    "plugins/weather.ts": `import { z } from "zod";
import { defineTool, definePlugin } from ${api};
export default definePlugin({
  name: "weather",
  kind: "tool",
  setup: () =>
    defineTool({
      name: "weather",
      description: "Today's weather in a city",
      input: z.object({ city: z.string().min(1) }),
      idempotent: true,
      execute: ({ city }: { city: string }, ctx) => ({ city, sky: "clear", user: ctx.userId, run: ctx.runId.length > 0 }),
    }),
});
`,
    // Reports how many of its calls were running at once at its start: the cap shows as overlap.
    "plugins/sleeper.mjs": `import { definePlugin } from ${api};
let running = 0;
export default definePlugin({
  name: "sleeper",
  kind: "tool",
  setup: () => ({
    name: "sleeper",
    description: "Sleeps 150 ms",
    inputSchema: { type: "object" },
    async execute() {
      const seen = ++running;
      await new Promise((r) => setTimeout(r, 150));
      running--;
      return String(seen);
    },
  }),
});
`,
    // Waits until its signal fires, and leaves a file saying so: the test reads it to know the cancel arrived.
    "plugins/waiter.mjs": `import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { definePlugin } from ${api};
export default definePlugin({
  name: "waiter",
  kind: "tool",
  setup: () => ({
    name: "waiter",
    description: "Waits until told to stop",
    inputSchema: { type: "object", properties: { tag: { type: "string" } }, required: ["tag"] },
    execute: (args, ctx) =>
      new Promise((_, reject) => {
        writeFileSync(join(${JSON.stringify(markerDir)}, args.tag + ".started"), "");
        ctx.signal.addEventListener("abort", () => {
          writeFileSync(join(${JSON.stringify(markerDir)}, args.tag + ".aborted"), String(ctx.signal.reason));
          reject(ctx.signal.reason);
        });
      }),
  }),
});
`,
  };
}

type Event = ExecuteStreamResponse["event"];
const kinds = (events: Event[]) => events.map((e) => e.case);

describe.each(["node", "python"] as const)("tool calling through the server, with a %s ToolService", (backendKind) => {
  let server: ServerProcess;
  let backend: ToolServer;
  let grpcClient: TestClient;
  let dir: string;
  beforeAll(async () => {
    dir = projectDir();
    writeFiles(dir, toolPlugins(dir));
    backend = await startToolServer(backendKind);
    const config = {
      server: { host: "127.0.0.1" },
      log: { level: "warn" },
      tools: { plugins: ["weather", "waiter", "sleeper"], backends: { billing: { address: backend.address, allow: ["lookup", "slow", "fail", "silent"] } } },
      agents: [
        { id: "clerk", provider: "echo", model: "echo-1", tools: ["weather", "waiter", "sleeper", "billing__*"], limits: { maxSteps: 4, maxParallelTools: 2 } },
      ],
    };
    writeFiles(dir, { "config.json": JSON.stringify(config) });
    server = await serveFile(join(dir, "config.json"), ["--port", "0", "--http-port", "0"]);
    grpcClient = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    grpcClient?.close();
    await server?.stop();
    await backend?.stop();
    removeProjectDirs();
  });

  it("runs a two-step loop with a tool plugin and streams every step as typed events (gRPC)", async () => {
    const task = '!call weather {"city":"Paris"}\nWhat is the weather?';
    const events = (await grpcClient.collect(grpcClient.stream(AgentService, A.executeStream, { agentId: "clerk", task, userId: "ann" }))).map((m) => m.event);
    expect(kinds(events)).toEqual([
      "started",
      "stepStarted",
      "toolCallStarted",
      "toolCallDelta",
      "toolCallDelta",
      "stepFinished",
      "toolCall",
      "toolResult",
      "stepStarted",
      ...events.slice(9, -2).map(() => "delta"),
      "stepFinished",
      "completed",
    ]);
    const started = events[2]!.value as { name: string; toolCallId: string };
    expect(started.name).toBe("weather");
    const call = events[6]!.value as { call: { name: string; arguments: string; toolCallId: string } };
    expect(call.call).toMatchObject({ name: "weather", toolCallId: started.toolCallId });
    expect(JSON.parse(call.call.arguments)).toEqual({ city: "Paris" });
    const result = events[7]!.value as { outcome: ToolOutcome; output: string };
    expect(result.outcome).toBe(ToolOutcome.OK);
    expect(JSON.parse(result.output)).toEqual({ city: "Paris", sky: "clear", user: "ann", run: true });
    const completed = events.at(-1)!.value as { output: string; steps: number; toolCalls: { name: string }[]; finishReason: string };
    expect(completed.output).toBe(`[history=0] What is the weather?\n[weather] ${result.output}`);
    expect(completed.steps).toBe(2);
    expect(completed.toolCalls.map((c) => c.name)).toEqual(["weather"]);
  });

  it("runs the backend's own tool with the run's fields and answers over Connect JSON", async () => {
    const agents = createClient(AgentService, createConnectTransport({ baseUrl: `http://127.0.0.1:${server.httpPort}`, httpVersion: "1.1" }));
    const res = await agents.execute({ agentId: "clerk", task: '!call billing__lookup {"key":"acct-9"}\nbalance?', userId: "bob" });
    const record = res.result!.toolCalls[0]!;
    expect(record).toMatchObject({ name: "billing__lookup", outcome: ToolOutcome.OK, step: 1 });
    expect(JSON.parse(record.output)).toEqual({ key: "acct-9", value: "value of acct-9", server: backendKind });
    const seen = await backend.waitFor((r) => r.event === "call" && r.request?.toolCallId === record.toolCallId);
    expect(seen.request).toMatchObject({ name: "lookup", userId: "bob", agentId: "clerk", arguments: '{"key":"acct-9"}' });
    expect(seen.request!.idempotencyKey).toMatch(new RegExp(`:${record.toolCallId}$`));
    // A backend tool's error is the model's to read; the run goes on.
    const failed = await agents.execute({ agentId: "clerk", task: "!call billing__silent {}\nand?" });
    expect(failed.result!.toolCalls[0]!.outcome).toBe(ToolOutcome.ERROR);
    expect(failed.result!.toolCalls[0]!.output).toMatch(/backend "billing" tool "silent" failed: the stream ended without an output/);
    expect(failed.result!.success).toBe(true);
    // A backend tool that declares needs_approval is not run by Execute, which cannot wait for a person.
    const gated = await agents.execute({ agentId: "clerk", task: "!call billing__fail {}\nand?" });
    expect(gated.result!.toolCalls[0]!.outcome).toBe(ToolOutcome.DENIED);
  });

  it("cancel mid-tool reaches the plugin tool's signal and the backend's CallTool", async () => {
    for (const [task, reached] of [
      ['!call waiter {"tag":"cancel-1"}', () => existsSync(join(dir, "cancel-1.aborted"))],
      ['!call billing__slow {"ms":60000}', () => backend.records.some((r) => r.event === "cancelled")],
    ] as const) {
      const call = grpcClient.stream(AgentService, A.executeStream, { agentId: "clerk", task });
      const ended = statusOf(grpcClient.collect(call));
      // The tool is running once its tool_call event has been sent.
      await new Promise<void>((res) => call.on("data", (m: ExecuteStreamResponse) => m.event.case === "toolCall" && res()));
      call.cancel();
      expect((await ended).code).toBe(1); // CANCELLED
      await waitFor(`the tool saw the cancel (${task})`, () => (reached() ? true : undefined), 10_000);
    }
    expect(readFileSync(join(dir, "cancel-1.aborted"), "utf8")).toMatch(/cancel/i);
  });

  it("runs a step's calls in parallel, at most maxParallelTools at once", async () => {
    const task = Array.from({ length: 4 }, () => "!call sleeper {}").join("\n");
    const res = await grpcClient.unary(AgentService, A.execute, { agentId: "clerk", task });
    const seen = res.result!.toolCalls.map((c) => Number(c.output));
    expect(res.result!.toolCalls.map((c) => c.outcome)).toEqual(Array(4).fill(ToolOutcome.OK));
    expect(Math.max(...seen)).toBe(2);
  });

  it("publishes TOOL_CALLED and TOOL_COMPLETED to Subscribe", async () => {
    const sub = grpcClient.stream(EventService, EventService.method.subscribe, { agentId: "clerk", types: [EventType.TOOL_CALLED, EventType.TOOL_COMPLETED] });
    const received: { type: EventType; data: Record<string, unknown> }[] = [];
    const two = new Promise<void>((resolve) => {
      sub.on("data", (m: { event?: { type: EventType; data?: Record<string, unknown> } }) => {
        received.push({ type: m.event!.type, data: m.event!.data ?? {} });
        if (received.length === 2) resolve();
      });
      sub.on("error", () => {});
    });
    // The subscription registers on the server shortly after the stream opens.
    await new Promise((r) => setTimeout(r, 200));
    await grpcClient.unary(AgentService, A.execute, { agentId: "clerk", task: '!call weather {"city":"Kyiv"}\n?' });
    await two;
    sub.cancel();
    expect(received.map((e) => [e.type, e.data.tool, e.data.outcome])).toEqual([
      [EventType.TOOL_CALLED, "weather", undefined],
      [EventType.TOOL_COMPLETED, "weather", "ok"],
    ]);
  });

  it("ends at maxSteps with a result holding what it has", async () => {
    const res = await grpcClient.unary(AgentService, A.execute, { agentId: "clerk", task: '!loop weather {"city":"Oslo"}\ngo', options: { maxSteps: 3 } });
    expect(res.result!.finishReason).toBe("max_steps");
    expect(res.result!.steps).toBe(3);
    expect(res.result!.toolCalls.map((c) => c.outcome)).toEqual([ToolOutcome.OK, ToolOutcome.OK, ToolOutcome.SKIPPED]);
  });

  it("checks structured output and repairs a bad answer once", async () => {
    const outputSchema = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
    const res = await grpcClient.unary(AgentService, A.execute, {
      agentId: "clerk",
      task: '!answer Paris, I think\n!answer {"city":"Paris"}\nwhere?',
      options: { outputSchema },
    });
    expect(res.result!.success).toBe(true);
    expect(res.result!.structuredOutput).toBeDefined();
    expect(res.result!.structuredOutput!.kind).toEqual({ case: "structValue", value: expect.anything() });
    expect(res.result!.output).toBe('{"city":"Paris"}');
    expect(res.result!.steps).toBe(2);
    const unrepaired = await grpcClient.unary(AgentService, A.execute, {
      agentId: "clerk",
      task: "!answer nope\n!answer still no\nwhere?",
      options: { outputSchema },
    });
    expect(unrepaired.result!.success).toBe(false);
    expect(unrepaired.result!.validationErrors[0]).toMatch(/not JSON/);
  });

  it("stores the tool turn, returns it from GetSession, and continues the conversation", async () => {
    const { session } = await grpcClient.unary(SessionService, SessionService.method.createSession, { userId: "cy", agentId: "clerk" });
    const sessionId = session!.sessionId;
    await grpcClient.unary(AgentService, A.execute, { sessionId, userId: "cy", task: '!call weather {"city":"Rome"}\nweather?' });
    const second = await grpcClient.unary(AgentService, A.execute, { sessionId, userId: "cy", task: "thanks" });
    // user, assistant with the call, the tool's answer, the answer: 4 messages before this task.
    expect(second.result!.output).toBe("[history=4] thanks");
    const got = await grpcClient.unary(SessionService, SessionService.method.getSession, { sessionId, userId: "cy" });
    const messages = got.session!.messages;
    expect(messages.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant", "user", "assistant"]);
    expect(messages[1]!.toolCalls.map((c) => c.name)).toEqual(["weather"]);
    expect(messages[2]!.toolCallId).toBe(messages[1]!.toolCalls[0]!.toolCallId);
  });

  it("refuses a call that names a tool the agent does not have, and narrows by the call's list", async () => {
    const narrowed = await grpcClient.unary(AgentService, A.execute, {
      agentId: "clerk",
      task: '!call weather {"city":"Oslo"}\n?',
      options: { tools: ["billing__*"] },
    });
    expect(narrowed.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.DENIED });
    const bad = await statusOf(grpcClient.unary(AgentService, A.execute, { agentId: "clerk", task: "x", options: { toolChoice: "no such tool!" } }));
    expect(bad.code).toBe(3);
    expect(bad.details).toContain("options.tool_choice");
  });

  it.runIf(backendKind === "node")("a Python client generated before tool calling streams a tool run unchanged", async () => {
    const out = await runPython(
      [join(root, "test/fixtures/python-before-tools/stream_tool_run.py"), `127.0.0.1:${server.grpcPort}`, "clerk", '!call weather {"city":"Lima"}\nsunny?'],
      join(root, "test/fixtures/python-before-tools"),
    );
    expect(out).toContain('output: [history=0] sunny?\n[weather] {"city":"Lima"');
    expect(out).toContain("finish: stop");
    expect(out).toMatch(/kinds: started unknown delta unknown completed\n/);
  });
});
