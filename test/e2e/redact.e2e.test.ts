import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;

// The echo provider streams the task back word by word, so each secret below
// reaches the redact middleware split over several deltas.
const SECRETS = ["555 123 4567", "ann.lee@example.com", "sk-proj-Zx81kLmQ2vRt7YwE4pNc9AbD", "4111 1111 1111 1111"];
const TASK = `please call 555 123 4567 or mail ann.lee@example.com; the key is sk-proj-Zx81kLmQ2vRt7YwE4pNc9AbD and the card 4111 1111 1111 1111 thanks`;
const REDACTED = "[history=0] please call [REDACTED:phone] or mail [REDACTED:email]; the key is [REDACTED:apiKey] and the card [REDACTED:creditCard] thanks";

describe(`redact over gRPC, echo provider, pipeline [logging, validation, redact] (${runtime})`, () => {
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    server = await startServer({
      // debug: the most the server would ever log about a call.
      log: { level: "debug" },
      pipeline: ["logging", "validation", "redact"],
      providers: { echo: { plugin: "echo" } },
      agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
  });

  it("ExecuteStream: no delta holds a secret; the deltas add up to the completed output", async () => {
    const events = await client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", task: TASK }));

    expect(events[0]?.event.case).toBe("started");
    const deltas = events.flatMap((e) => (e.event.case === "delta" ? [e.event.value.text] : []));
    expect(deltas.length).toBeGreaterThan(1);
    for (const secret of SECRETS) {
      expect(deltas.some((d) => d.includes(secret))).toBe(false);
      expect(deltas.join("")).not.toContain(secret);
    }
    const done = events.at(-1)!.event;
    expect(done.case).toBe("completed");
    if (done.case !== "completed") return;
    expect(deltas.join("")).toBe(done.value.output);
    expect(done.value.output).toBe(REDACTED);
    expect(done.value.metadata).toMatchObject({
      redactions: "4",
      "redactions.phone": "1",
      "redactions.email": "1",
      "redactions.apiKey": "1",
      "redactions.creditCard": "1",
    });
  });

  it("Execute answers exactly what ExecuteStream streamed, with the same counts", async () => {
    const unary = await client.unary(AgentService, A.execute, { agentId: "echo", task: TASK });
    const streamed = await client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", task: TASK }));
    const done = streamed.at(-1)!.event;

    expect(unary.result?.output).toBe(REDACTED);
    expect(done.case === "completed" && done.value.output).toBe(unary.result?.output);
    expect(done.case === "completed" && done.value.metadata).toEqual(unary.result?.metadata);
  });

  it("ExecuteBatch items are redacted the same way", async () => {
    const res = await client.unary(AgentService, A.executeBatch, {
      requests: [
        { agentId: "echo", task: TASK },
        { agentId: "echo", task: "nothing to hide" },
      ],
    });

    const outputs = res.items.map((item) => (item.outcome.case === "result" ? item.outcome.value.output : `error ${item.outcome.value?.code}`));
    expect(outputs).toEqual([REDACTED, "[history=0] nothing to hide"]);
  });

  it("the server's log lines hold none of the secrets", async () => {
    // Log lines are written in batches, at most 200 ms late.
    await new Promise((r) => setTimeout(r, 400));

    const log = server.lines.join("\n");
    expect(log).toContain('"status":"OK"');
    // redact's own line says how many, never what.
    expect(server.lines.some((l) => l.includes('"msg":"redacted"') && l.includes('"redactions":4'))).toBe(true);
    for (const secret of SECRETS) expect(log).not.toContain(secret);
  });
});
