// McpToolSource against a real MCP server (test/fixtures/mcp/server.mjs, built on the
// official server SDK) over stdio and over streamable HTTP.
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Code, ConnectError, ToolError, type Tool } from "@qingyu/plugin-api";
import pino from "pino";
import { toolContext } from "../../support/tool-context.ts";
import { afterEach, describe, expect, it, vi } from "vitest";
import { McpServerSchema } from "../../../src/tools/mcp/config.ts";
import { McpToolSource } from "../../../src/tools/mcp/mcp-source.ts";
import { EventLog, FIXTURE_SERVER, isRunning, startHttpFixture, stdioFixture, type HttpFixture } from "../../fixtures/mcp/start.ts";
import { EVENTUALLY } from "../../support/limits.ts";
import { tempDir } from "../../support/temp-dirs.ts";

const root = resolve(import.meta.dirname, "../../..");

const sources: McpToolSource[] = [];
const httpServers: HttpFixture[] = [];

afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.dispose()));
  await Promise.all(httpServers.splice(0).map((s) => s.kill()));
});

/** A source with a logger whose lines the test reads. */
function source(name: string, config: Record<string, unknown>, baseDir = root) {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const made = new McpToolSource(name, McpServerSchema.parse(config), { log, baseDir });
  sources.push(made);
  return { source: made, lines };
}

async function httpFixture(log: EventLog, port = 0, env: Record<string, string> = {}): Promise<HttpFixture> {
  const server = await startHttpFixture(log, port, env);
  httpServers.push(server);
  return server;
}

function context(signal = new AbortController().signal) {
  return toolContext({ signal });
}

function named(tools: readonly Tool[], name: string): Tool {
  const tool = tools.find((t) => t.name === name);
  if (!tool) throw new Error(`no tool ${name} among ${tools.map((t) => t.name).join(", ")}`);
  return tool;
}

const run = (tool: Tool, args: unknown, ctx = context().ctx): Promise<unknown> => Promise.resolve(tool.execute(args, ctx));

describe.each(["stdio", "http"] as const)("McpToolSource over %s", (transport) => {
  /** A fresh fixture server for this transport, and the config that reaches it. */
  async function server(extra: Record<string, unknown> = {}) {
    const log = new EventLog();
    if (transport === "stdio") return { log, config: stdioFixture(log, extra) };
    const http = await httpFixture(log);
    return { log, config: { url: http.url, ...extra } };
  }

  it("lists the server's tools as <server>__<tool>, with their schemas, skipping a name a model API refuses", async () => {
    const { config } = await server({ idempotent: ["ech?"] });
    const { source: files, lines } = source("files", config);
    const tools = await files.list(new AbortController().signal);

    expect(tools.map((t) => t.name)).toEqual(["files__echo", "files__add", "files__slow", "files__fail", "files__spawn_child", "files__die"]);
    const add = named(tools, "files__add");
    expect(add.description).toBe("Adds two numbers.");
    expect(add.inputSchema).toMatchObject({ type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] });
    expect(add.outputSchema).toMatchObject({ type: "object", properties: { sum: { type: "number" } } });
    expect(add.timeoutMs).toBe(60_000);
    // idempotent: add by its idempotentHint, echo by the config's glob, the rest not.
    expect(tools.filter((t) => t.idempotent).map((t) => t.name)).toEqual(["files__echo", "files__add"]);
    expect(lines.filter((l) => l.level === 40 && l.tool === "weird.name")).toHaveLength(1);
  });

  it("lists only the tools its allowlist names", async () => {
    const { config } = await server({ allow: ["echo", "a*", "weird.*"] });
    const tools = await source("files", config).source.list(new AbortController().signal);
    expect(tools.map((t) => t.name)).toEqual(["files__echo", "files__add"]);
  });

  it("calls tools: text content as is, structured content as JSON", async () => {
    const { config } = await server();
    const tools = await source("files", config).source.list(new AbortController().signal);
    expect(await run(named(tools, "files__echo"), { text: "héllo 世界" })).toBe("héllo 世界");
    expect(JSON.parse((await run(named(tools, "files__add"), { a: 2, b: 40 })) as string)).toEqual({ sum: 42 });
  });

  it("turns an isError result into a ToolError with the server's text", async () => {
    const { config } = await server();
    const tools = await source("files", config).source.list(new AbortController().signal);
    const err = await run(named(tools, "files__fail"), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as Error).message).toBe("it failed on purpose");
  });

  it("lets progress reports extend a call past its timeout, and times out a call without them", async () => {
    const { config, log } = await server({ timeoutMs: 1000 });
    const tools = await source("files", config).source.list(new AbortController().signal);
    const slow = named(tools, "files__slow");

    const { ctx, progress } = context();
    expect(await run(slow, { ms: 2500 }, ctx)).toBe("slept 2500");
    expect(progress.length).toBeGreaterThan(2);
    expect(progress.every(([message, , total]) => message === "sleeping" && total === 2500)).toBe(true);
    const done = progress.map(([, d]) => d!);
    expect(done).toEqual([...done].sort((a, b) => a - b));

    const err = await run(slow, { ms: 2500, progress: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as Error).message).toMatch(/^MCP server "files" \(tool slow\): no answer within 1000 ms/);
    // The timed-out call was cancelled on the server, not left running.
    await log.waitFor("cancelled");
  });

  it("forwards a cancel to the server and rejects with the signal's reason without waiting for the tool", async () => {
    const { config, log } = await server();
    const tools = await source("files", config).source.list(new AbortController().signal);
    const controller = new AbortController();
    const call = run(named(tools, "files__slow"), { ms: 60_000 }, context(controller.signal).ctx);
    const outcome = call.catch((e: unknown) => e);
    await log.waitFor("slow-started");
    const reason = new Error("the client cancelled");
    controller.abort(reason);

    expect(await outcome).toBe(reason);
    expect(log.of("slow-finished")).toEqual([]);
    await log.waitFor("cancelled");
  });

  it("opens one connection for concurrent first callers", async () => {
    const { config, log } = await server();
    const { source: files } = source("files", config);
    const signal = new AbortController().signal;
    const listings = await Promise.all([files.list(signal), files.list(signal), files.list(signal), files.list(signal)]);
    expect(listings.map((l) => l.length)).toEqual([6, 6, 6, 6]);
    await Promise.all(["a", "b", "c"].map((text) => run(named(listings[0]!, "files__echo"), { text })));
    expect(log.of("initialized")).toHaveLength(1);
  });
});

describe("McpToolSource over stdio", () => {
  it("kills the server's whole process group on dispose, once however often it is called", async () => {
    const log = new EventLog();
    const { source: files } = source("files", stdioFixture(log));
    const tools = await files.list(new AbortController().signal);
    const grandchild = Number(await run(named(tools, "files__spawn_child"), {}));
    const server = log.of("start")[0]!.pid;
    expect(isRunning(grandchild)).toBe(true);

    await Promise.all([files.dispose(), files.dispose()]);
    await files.dispose();
    await vi.waitFor(() => expect([isRunning(server), isRunning(grandchild)]).toEqual([false, false]), EVENTUALLY);

    const err = await run(named(tools, "files__echo"), { text: "late" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as Error).message).toMatch(/MCP server "files".*shut down/);
  });

  it("fails a call whose server dies (even leaving a child on its stdout), and starts the server again for the next calls", async () => {
    const log = new EventLog();
    // A long timeout: a call that waited for the stdout to close would fail by timing out, not with the exit.
    const { source: files, lines } = source("files", stdioFixture(log, { timeoutMs: 120_000 }));
    const tools = await files.list(new AbortController().signal);

    const err = await run(named(tools, "files__die"), { orphan: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as Error).message).toBe('MCP server "files" (tool die): the server exited during the call (exit code 3)');
    const { child: orphan } = await log.waitFor("child");
    await vi.waitFor(() => expect(isRunning(orphan!)).toBe(false), EVENTUALLY);
    expect(lines.some((l) => l.level === 40 && l.exit === "exit code 3")).toBe(true);

    // Concurrent next calls share the one new server.
    const answers = await Promise.all(["a", "b", "c"].map((text) => run(named(tools, "files__echo"), { text })));
    expect(answers).toEqual(["a", "b", "c"]);
    const starts = log.of("start");
    expect(starts).toHaveLength(2);
    expect(starts[1]!.pid).not.toBe(starts[0]!.pid);
    expect(log.of("initialized")).toHaveLength(2);
  });

  it("resolves a relative command and cwd from the config's folder, and passes env", async () => {
    const log = new EventLog();
    const dir = tempDir("qingyu-mcp-config-");
    writeFileSync(join(dir, "run-server.sh"), `#!/bin/sh\nexec "${process.execPath}" "${FIXTURE_SERVER}"\n`);
    chmodSync(join(dir, "run-server.sh"), 0o755);
    const config = { command: "./run-server.sh", cwd: ".", env: { MCP_FIXTURE_LOG: log.file } };
    const tools = await source("files", config, dir).source.list(new AbortController().signal);
    expect(await run(named(tools, "files__echo"), { text: "from a script" })).toBe("from a script");
    expect(log.of("start")).toHaveLength(1);
  });
});

describe("McpToolSource with a server that cannot start", () => {
  it("fails list with Unavailable, naming the server and what it said", async () => {
    const crashing = source("broken", { command: process.execPath, args: ["-e", "console.error('no API key configured'); process.exit(2)"] }).source;
    const err = await crashing.list(new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect((err as ConnectError).rawMessage).toBe(
      'MCP server "broken" could not list its tools: the server ended during start-up (exit code 2); its last words: no API key configured',
    );

    const missing = source("missing", { command: "./no-such-server" }, tempDir("qingyu-mcp-config-")).source;
    const notFound = await missing.list(new AbortController().signal).catch((e: unknown) => e);
    expect((notFound as ConnectError).rawMessage).toMatch(/^MCP server "missing" could not list its tools: .*not started: spawn .*no-such-server ENOENT/);
  });

  it("kills a server that does not answer initialize within the timeout", async () => {
    const pidFile = join(tempDir("qingyu-mcp-silent-"), "pid");
    const script = `require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000)`;
    const silent = source("silent", { command: process.execPath, args: ["-e", script], timeoutMs: 500 }).source;
    const err = await silent.list(new AbortController().signal).catch((e: unknown) => e);
    expect((err as ConnectError).rawMessage).toBe('MCP server "silent" could not list its tools: no answer within 500 ms');
    expect(isRunning(Number(readFileSync(pidFile, "utf8")))).toBe(false);
  });
});

describe("McpToolSource over streamable HTTP", () => {
  it("starts a new session when a restarted server no longer knows the old one", async () => {
    const log = new EventLog();
    const first = await httpFixture(log);
    const { source: files } = source("files", { url: first.url });
    const tools = await files.list(new AbortController().signal);
    expect(await run(named(tools, "files__echo"), { text: "before" })).toBe("before");

    await first.kill();
    const second = await httpFixture(log, first.port);
    // Concurrent calls on the lost session: each is answered, on one new session.
    const answers = await Promise.all(["x", "y", "z"].map((text) => run(named(tools, "files__echo"), { text })));
    expect(answers).toEqual(["x", "y", "z"]);

    // The new server refused the old session's call, then the source initialised a new session.
    const order = log
      .all()
      .filter((e) => e.pid === second.child.pid)
      .map((e) => (e.event === "unknown-session" ? `404 ${e.method}` : e.event));
    expect(order).toContain("404 tools/call");
    expect(order.indexOf("404 tools/call")).toBeLessThan(order.indexOf("initialized"));
    expect(order.filter((e) => e === "initialized")).toHaveLength(1);
    expect(log.of("initialized")).toHaveLength(2);
  });

  it("initialises again only once: a second 404 is the call's error", async () => {
    const log = new EventLog();
    const http = await httpFixture(log, 0, { MCP_FIXTURE_REJECT_CALLS: "1" });
    const tools = await source("files", { url: http.url }).source.list(new AbortController().signal);

    const err = await run(named(tools, "files__echo"), { text: "never" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as Error).message).toMatch(/^MCP server "files" \(tool echo\): .*Session not found/);
    expect(log.of("initialized")).toHaveLength(2);
    expect(log.of("unknown-session").filter((e) => e.method === "tools/call")).toHaveLength(2);
  });

  it("fails a call at once when the server dies during it", async () => {
    const log = new EventLog();
    const http = await httpFixture(log);
    const tools = await source("files", { url: http.url, timeoutMs: 120_000 }).source.list(new AbortController().signal);
    const err = await run(named(tools, "files__die"), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as Error).message).toMatch(/^MCP server "files" \(tool die\): .*ended the response stream without answering/);
  });
});
