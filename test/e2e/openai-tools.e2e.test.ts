// The tool loop on the real path: the openai provider against a local OpenAI-compatible server
// that answers with streamed tool calls (two, interleaved, finishing with "stop" as some servers
// do), then with text. What the upstream receives is OpenAI's wire shape.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient } from "../support/grpc-client.ts";
import { projectDir, publicApi, removeProjectDirs, writeFiles } from "../support/plugin-fixtures.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;

describe("a tool loop through the openai provider", () => {
  let fake: FakeOpenAI;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    const dir = projectDir();
    writeFiles(dir, {
      "plugins/weather.mjs": `import { definePlugin } from ${JSON.stringify(publicApi)};
export default definePlugin({ name: "weather", kind: "tool", setup: () => ({
  name: "weather", description: "Weather in a city",
  inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  execute: ({ city }) => ({ city, sky: city === "東京" ? "rain" : "clear" }),
}) });
`,
    });
    server = await startServer({
      log: { level: "warn" },
      providers: { llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "sk-test" } } },
      plugins: { dirs: [join(dir, "plugins")] },
      tools: { plugins: ["weather"] },
      agents: [{ id: "gpt", provider: "llm", model: "fake-model", tools: ["weather"], defaults: { parallelToolCalls: true } }],
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    await fake?.close();
    removeProjectDirs();
  });

  it("assembles two interleaved streamed calls, runs them, and sends their results back in OpenAI's shape", async () => {
    const fn = (index: number, extra: Record<string, unknown>) => ({ tool_calls: [{ index, ...extra }] });
    fake.enqueue(
      {
        kind: "deltas",
        splitCharacters: true,
        deltas: [
          fn(0, { id: "call_a", type: "function", function: { name: "weather", arguments: "" } }),
          fn(1, { id: "call_b", type: "function", function: { name: "weather", arguments: '{"ci' } }),
          fn(0, { function: { arguments: '{"city":"東' } }),
          fn(1, { function: { arguments: 'ty":"Paris"}' } }),
          fn(0, { function: { arguments: '京"}' } }),
        ],
        // Some servers finish a tool-calling answer with "stop": the calls are what counts.
        finishReason: "stop",
      },
      { kind: "stream", chunks: ["Rain in Tokyo, ", "clear in Paris."] },
    );
    const first = fake.requests.length;
    const events = await client.collect(client.stream(AgentService, A.executeStream, { agentId: "gpt", task: "Weather in Tokyo and Paris?" }));
    const result = events.at(-1)!.event;
    expect(result.case).toBe("completed");
    const completed = result.value as {
      output: string;
      steps: number;
      toolCalls: { toolCallId: string; arguments: string; outcome: ToolOutcome; output: string }[];
    };
    expect(completed.output).toBe("Rain in Tokyo, clear in Paris.");
    expect(completed.steps).toBe(2);
    expect(completed.toolCalls.map((c) => [c.toolCallId, c.arguments, c.outcome])).toEqual([
      ["call_a", '{"city":"東京"}', ToolOutcome.OK],
      ["call_b", '{"city":"Paris"}', ToolOutcome.OK],
    ]);

    const [step1, step2] = fake.requests.slice(first).map((r) => r.body as Record<string, unknown>);
    expect(step1!.tools).toEqual([
      { type: "function", function: { name: "weather", description: "Weather in a city", parameters: expect.objectContaining({ required: ["city"] }) } },
    ]);
    expect(step1!.parallel_tool_calls).toBe(true);
    expect((step2!.messages as unknown[]).slice(-3)).toEqual([
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_a", type: "function", function: { name: "weather", arguments: '{"city":"東京"}' } },
          { id: "call_b", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } },
        ],
      },
      { role: "tool", tool_call_id: "call_a", content: '{"city":"東京","sky":"rain"}' },
      { role: "tool", tool_call_id: "call_b", content: '{"city":"Paris","sky":"clear"}' },
    ]);
  });

  it("gives the model malformed arguments back as a tool error and lets it answer", async () => {
    fake.enqueue(
      {
        kind: "deltas",
        deltas: [{ tool_calls: [{ index: 0, id: "call_x", type: "function", function: { name: "weather", arguments: '{"city": Par' } }] }],
        finishReason: "tool_calls",
      },
      { kind: "stream", chunks: ["Sorry."] },
    );
    const first = fake.requests.length;
    const res = await client.unary(AgentService, A.execute, { agentId: "gpt", task: "Weather?" });
    expect(res.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.INVALID_ARGUMENTS });
    const step2 = fake.requests[first + 1]!.body as { messages: { role: string; content: string }[] };
    expect(step2.messages.at(-1)!.role).toBe("tool");
    expect(step2.messages.at(-1)!.content).toMatch(/not valid JSON/);
    expect(res.result!.output).toBe("Sorry.");
  });
});
