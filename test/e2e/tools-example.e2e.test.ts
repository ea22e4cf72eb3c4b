// The tools example as a user runs it (docs/tools.md): examples/python/tool_service.py as the
// backend's ToolService, the server started with examples/tools/config.yaml (a tool plugin, an
// MCP server over stdio it starts itself, the backend), and examples/python/tool_agent.py as the
// Python backend driving the agent: typed events, a cancel that reaches the backend's tool, and
// the next turn of the conversation.
import type { ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { READY_WITHIN_MS } from "../support/limits.ts";
import { signalGroup, spawnTracked } from "../support/process-groups.ts";
import { runPython } from "../support/python.ts";
import { serveFile, type ServerProcess } from "../support/server-process.ts";

const root = resolve(import.meta.dirname, "../..");

describe("the tools example: a plugin, an MCP server and a Python ToolService", () => {
  let backend: ChildProcess;
  const backendLines: string[] = [];
  let server: ServerProcess;

  beforeAll(async () => {
    backend = spawnTracked("/usr/bin/python3", [join(root, "examples/python/tool_service.py"), "0"], {
      env: { ...process.env, PYTHONPATH: join(root, "clients/python") },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const port = await new Promise<string>((res, rej) => {
      createInterface({ input: backend.stdout! }).on("line", (line) => (backendLines.push(line), backendLines.length === 1 && res(line)));
      setTimeout(() => rej(new Error("tool_service.py printed no port")), READY_WITHIN_MS).unref();
    });
    server = await serveFile(join(root, "examples/tools/config.yaml"), ["--port", "0", "--http-port", "0"], { BILLING_ADDRESS: `127.0.0.1:${port}` });
  });
  afterAll(async () => {
    await server?.stop();
    if (backend?.pid) signalGroup(backend.pid, "SIGKILL");
  });

  it("runs tool_agent.py as its docstring says", async () => {
    const out = await runPython([join(root, "examples/python/tool_agent.py"), `127.0.0.1:${server.grpcPort}`], join(root, "clients/python"));
    const lines = out.trim().split("\n");
    // One step calls a tool from each source; their results come as each finishes, in any order.
    expect(lines.slice(0, 4)).toEqual([
      "step 1",
      '  call weather {"city": "Paris"}',
      '  call notes__add_note {"text": "call the bank"}',
      '  call billing__balance {"account": "acct-1"}',
    ]);
    expect(lines.slice(4, 7).sort()).toEqual([
      '  result billing__balance TOOL_OUTCOME_OK {"account": "acct-1", "balance": 120.0}',
      "  result notes__add_note TOOL_OUTCOME_OK saved note 1",
      '  result weather TOOL_OUTCOME_OK {"city":"Paris","sky":"cloudy","celsius":15}',
    ]);
    expect(lines.slice(7)).toEqual([
      "step 2",
      // The model is given the results in the order it asked for them.
      'answer: [history=0] How are things? | [weather] {"city":"Paris","sky":"cloudy","celsius":15} | [notes__add_note] saved note 1 | [billing__balance] {"account": "acct-1", "balance": 120.0}',
      "steps: 2 tool calls: 3 finish: stop",
      "cancelling during billing__refund",
      "stream ended: CANCELLED",
      "step 1",
      "  call notes__list_notes {}",
      "  result notes__list_notes TOOL_OUTCOME_OK 1. call the bank",
      "step 2",
      "answer: [history=6] What did I note? | [notes__list_notes] 1. call the bank",
      "history: user assistant(3 calls) tool tool tool assistant user assistant(1 calls) tool assistant",
    ]);
    // The backend saw its refund cancelled (and so never refunded).
    expect(backendLines.slice(1).map((l) => JSON.parse(l) as unknown)).toEqual([{ cancelled: expect.stringMatching(/^call_/) }]);
  });

  it("runs durable_run.py: a background run with the caller's own tool, answered on a new connection", async () => {
    const out = await runPython([join(root, "examples/python/durable_run.py"), `127.0.0.1:${server.grpcPort}`], join(root, "clients/python"));
    const lines = out.trim().split("\n");
    expect(lines[0]).toMatch(/^started [0-9a-f-]{36} \(a retry found the same run\)$/);
    expect(lines.slice(1)).toEqual([
      'waiting for caller user_location {"precise": true}',
      expect.stringMatching(/^answered \['call_[0-9_]+'\]$/),
      expect.stringMatching(/^ {2}#\d+ tool_result user_location: Paris$/),
      expect.stringMatching(/^ {2}#\d+ completed: \[history=0\] What is the weather where I am\? \| \[user_location\] Paris$/),
      "status RUN_STATUS_COMPLETED",
    ]);
  });

  it("runs run_stream.py: one bidirectional Run stream starts the run, answers its caller tool, and ends with it", async () => {
    const out = await runPython([join(root, "examples/python/run_stream.py"), `127.0.0.1:${server.grpcPort}`], join(root, "clients/python"));
    const lines = out.trim().split("\n");
    const kinds = lines.filter((l) => /^ *\d+ /.test(l)).map((l) => l.trim().split(" ")[1]);
    // The run parks on the caller's tool, the answer goes back on the stream, and the run goes on to its end
    // (runs of the same kind, such as text deltas, shown once).
    expect(kinds.filter((k, i) => k !== kinds[i - 1])).toEqual([
      "accepted",
      "started",
      "step_started",
      "tool_call_started",
      "tool_call_delta",
      "step_finished",
      "waiting",
      "tool_result",
      "step_started",
      "delta",
      "step_finished",
      "completed",
    ]);
    expect(lines).toContainEqual(expect.stringMatching(/^answered: \['call_[0-9_]+'\]$/));
    expect(out).toContain("output: [history=0] What is the weather where I am?\n[user_location] Lisbon\n");
    // The finished run comes again from its journal (no Redis here): every event but the deltas of text and of tool-call arguments.
    const journaled = kinds.filter((k) => k !== "delta" && k !== "tool_call_delta");
    expect(lines).toContain(`replayed ${journaled.length - 2} events after seq 2, 0 of them text deltas`);
    expect(lines.at(-1)).toMatch(/^refused: INVALID_ARGUMENT action: must be start or attach in the first message, not cancel$/);
  });
});
