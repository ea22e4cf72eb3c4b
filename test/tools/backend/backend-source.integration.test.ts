// BackendToolSource against real ToolService servers, one in Node (grpc-js) and one in
// Python (grpcio), over real gRPC: the same cases against each.
import { Code, ConnectError, ToolError, type Tool } from "@qingyu/plugin-api";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { z } from "zod";
import { BackendToolSource } from "../../../src/tools/backend/backend-source.ts";
import { BackendToolsSchema } from "../../../src/tools/backend/config.ts";
import { startToolServer, type ServerKind, type ToolServer } from "../../fixtures/tool-service/start.ts";
import { tempDir } from "../../support/temp-dirs.ts";
import { toolContext } from "../../support/tool-context.ts";

type ConfigInput = z.input<typeof BackendToolsSchema>;

/** A logger whose warnings the test reads. */
function capturingLogger() {
  const lines: { msg: string; tool?: string }[] = [];
  const log = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line) as { msg: string }) });
  return { log, lines };
}

let calls = 0;

/** A context with this test's run fields (each call its own ids); progress reports kept in order. */
function context(signal = new AbortController().signal, onProgress?: () => void, deadline?: number) {
  calls += 1;
  const ids = { runId: `run-${calls}`, toolCallId: `call-${calls}`, idempotencyKey: `key-${calls}` };
  return toolContext({ ...ids, attempt: 2, signal, deadline, agentId: "clerk", userId: "user-7", sessionId: "session-3" }, onProgress);
}

function byName(tools: readonly Tool[], name: string): Tool {
  const tool = tools.find((t) => t.name === name);
  if (!tool) throw new Error(`no tool ${name} in ${tools.map((t) => t.name).join(", ")}`);
  return tool;
}

/** A port nothing listens on (bound and released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe.each<ServerKind>(["node", "python"])("BackendToolSource against the %s ToolService", (kind) => {
  let server: ToolServer;
  const sources: BackendToolSource[] = [];

  beforeAll(async () => {
    server = await startToolServer(kind);
  });

  afterAll(async () => {
    for (const source of sources) source.dispose();
    await server?.stop();
  });

  function source(name: string, config: Partial<ConfigInput> = {}, deps: { maxOutputBytes?: number; baseDir?: string } = {}) {
    const { log, lines } = capturingLogger();
    const made = new BackendToolSource(name, BackendToolsSchema.parse({ address: server.address, ...config }), { log, baseDir: deps.baseDir ?? ".", ...deps });
    sources.push(made);
    return { source: made, warnings: lines };
  }

  it("lists the backend's tools namespaced by the backend, with their specs, and skips invalid names with a warning", async () => {
    const { source: billing, warnings } = source("billing");
    const tools = await billing.list(new AbortController().signal);
    expect(tools.map((t) => t.name)).toEqual(["billing__lookup", "billing__slow", "billing__fail", "billing__big", "billing__silent"]);
    const lookup = byName(tools, "billing__lookup");
    expect({ ...lookup, execute: undefined }).toEqual({
      name: "billing__lookup",
      description: "Looks a key up.",
      inputSchema: { type: "object", properties: { key: { type: "string" } }, required: ["key"] },
      outputSchema: { type: "object", properties: { value: { type: "string" } } },
      needsApproval: false,
      idempotent: true,
      sequential: false,
      timeoutMs: 30_000,
      maxConcurrency: undefined,
      execute: undefined,
    });
    const slow = byName(tools, "billing__slow");
    expect([slow.sequential, slow.maxConcurrency, slow.timeoutMs, slow.outputSchema]).toEqual([true, 2, undefined, undefined]);
    expect(byName(tools, "billing__fail").needsApproval).toBe(true);
    expect(warnings.map((w) => w.tool)).toEqual(["bad name!", "x".repeat(64)]);
    expect(warnings[0]!.msg).toContain('"billing__bad name!"');
  });

  it("keeps only the tools the allowlist's globs match", async () => {
    const tools = await source("crm", { allow: ["look*", "f?il", "nothing-*"] }).source.list(new AbortController().signal);
    expect(tools.map((t) => t.name)).toEqual(["crm__lookup", "crm__fail"]);
    expect(await source("none", { allow: [] }).source.list(new AbortController().signal)).toEqual([]);
  });

  it("calls a tool with the run's fields, the configured headers and the run's deadline, and returns its output", async () => {
    const tools = await source("billing", { metadata: { "x-api-key": "secret-1" } }).source.list(new AbortController().signal);
    const { ctx, progress } = context(undefined, undefined, Date.now() + 30_000);
    const output = await byName(tools, "billing__lookup").execute({ key: "acct-9" }, ctx);
    expect(JSON.parse(output as string)).toEqual({ key: "acct-9", value: "value of acct-9", server: kind });
    expect(progress).toEqual([]);
    const seen = await server.waitFor((r) => r.event === "call" && r.request?.toolCallId === ctx.toolCallId);
    expect(seen.request).toEqual({
      name: "lookup",
      arguments: JSON.stringify({ key: "acct-9" }),
      runId: ctx.runId,
      toolCallId: ctx.toolCallId,
      idempotencyKey: ctx.idempotencyKey,
      attempt: 2,
      agentId: "clerk",
      userId: "user-7",
      sessionId: "session-3",
    });
    expect(seen.apiKey).toBe("secret-1");
    expect(seen.deadlineMs).toBeGreaterThan(0);
    expect(seen.deadlineMs).toBeLessThanOrEqual(30_000);
  });

  it("forwards each progress report in order before the output", async () => {
    const tools = await source("jobs").source.list(new AbortController().signal);
    const { ctx, progress } = context();
    expect(await byName(tools, "jobs__slow").execute({ ms: 300 }, ctx)).toBe("done");
    expect(progress.length).toBeGreaterThan(0);
    progress.forEach(([message, done, total], i) => expect([message, done, total]).toEqual([`step ${i + 1}`, i + 1, undefined]));
  });

  it("turns is_error into a ToolError carrying the backend's text", async () => {
    const tools = await source("billing").source.list(new AbortController().signal);
    const failing = byName(tools, "billing__fail").execute({ account: 42 }, context().ctx);
    await expect(failing).rejects.toThrow(ToolError);
    await expect(failing).rejects.toThrow(/^no such account: 42$/);
  });

  it("fails a call whose stream ends without an output, naming the backend and the tool", async () => {
    const tools = await source("billing").source.list(new AbortController().signal);
    const silent = byName(tools, "billing__silent").execute({}, context().ctx);
    await expect(silent).rejects.toThrow(ToolError);
    await expect(silent).rejects.toThrow(`backend "billing" tool "silent" failed: the stream ended without an output`);
  });

  it("cancels the RPC when the call's signal fires, rejecting with its reason, and the backend sees the cancel", async () => {
    const tools = await source("jobs").source.list(new AbortController().signal);
    const controller = new AbortController();
    const reason = new Error("run cancelled by the caller");
    const { ctx, progress } = context(controller.signal, () => controller.abort(reason));
    await expect(byName(tools, "jobs__slow").execute({ ms: 120_000 }, ctx)).rejects.toBe(reason);
    expect(progress.length).toBe(1);
    await server.waitFor((r) => r.event === "cancelled" && r.toolCallId === ctx.toolCallId);
  });

  it("ends a call at its deadline with a DEADLINE_EXCEEDED tool error, and the backend sees it end", async () => {
    // The run's deadline travels with the call (the tool's own timeout is the loop's to enforce: progress restarts it).
    const tools = await source("jobs").source.list(new AbortController().signal);
    const { ctx } = context(undefined, undefined, Date.now() + 2000);
    const slow = byName(tools, "jobs__slow").execute({ ms: 120_000 }, ctx);
    await expect(slow).rejects.toThrow(ToolError);
    await expect(slow).rejects.toThrow(`backend "jobs" tool "slow" failed: DEADLINE_EXCEEDED`);
    const seen = await server.waitFor((r) => r.event === "call" && r.request?.toolCallId === ctx.toolCallId);
    expect(seen.deadlineMs).toBeLessThanOrEqual(2000);
    await server.waitFor((r) => r.event === "cancelled" && r.toolCallId === ctx.toolCallId);
  });

  it("refuses an output larger than maxOutputBytes as a tool error, and takes one below it", async () => {
    const tools = await source("files", {}, { maxOutputBytes: 64 * 1024 }).source.list(new AbortController().signal);
    const big = byName(tools, "files__big");
    expect(await big.execute({ bytes: 10_000 }, context().ctx)).toBe("x".repeat(10_000));
    const tooBig = big.execute({ bytes: 1_000_000 }, context().ctx);
    await expect(tooBig).rejects.toThrow(ToolError);
    await expect(tooBig).rejects.toThrow(`backend "files" tool "big" failed: RESOURCE_EXHAUSTED`);
  });

  it("answers a call to a backend that went away with a tool error naming it, and ListTools with UNAVAILABLE", async () => {
    const gone = await startToolServer(kind);
    const { log } = capturingLogger();
    const flaky = new BackendToolSource("flaky", BackendToolsSchema.parse({ address: gone.address }), { log, baseDir: "." });
    sources.push(flaky);
    const tools = await flaky.list(new AbortController().signal);
    await gone.stop();
    const call = byName(tools, "flaky__lookup").execute({ key: "k" }, context().ctx);
    await expect(call).rejects.toThrow(ToolError);
    // The model reads this one: the backend's name, not its address (ListTools's error, for the operator, has it).
    await expect(call).rejects.toThrow(`backend "flaky" tool "lookup" failed: UNAVAILABLE: `);
    const listing = flaky.list(new AbortController().signal);
    await expect(listing).rejects.toMatchObject({ code: Code.Unavailable });
    await expect(listing).rejects.toThrow(`backend "flaky" (${gone.address}) ListTools failed: UNAVAILABLE`);
  });

  it("dispose closes the channel once; the source then refuses to list", async () => {
    const { source: closing } = source("closing");
    await closing.list(new AbortController().signal);
    closing.dispose();
    closing.dispose();
    await expect(closing.list(new AbortController().signal)).rejects.toBeInstanceOf(ConnectError);
  });

  describe("over TLS", () => {
    let dir: string;
    let tlsServer: ToolServer;

    beforeAll(async () => {
      dir = tempDir("qingyu-tool-tls-");
      const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
      const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
      for (const ca of ["ca", "other-ca"]) openssl("req", "-x509", ...ec, "-keyout", `${ca}.key`, "-out", `${ca}.pem`, "-days", "1", "-subj", `/CN=${ca}`);
      writeFileSync(join(dir, "server.ext"), "subjectAltName=DNS:tools.test\nextendedKeyUsage=serverAuth\n");
      openssl("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=tools.test");
      openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "server.ext",
      );
      tlsServer = await startToolServer(kind, [join(dir, "server.pem"), join(dir, "server.key")]);
    });

    afterAll(async () => {
      await tlsServer?.stop();
    });

    function tlsSource(name: string, tls: ConfigInput["tls"]) {
      const { log } = capturingLogger();
      const made = new BackendToolSource(name, BackendToolsSchema.parse({ address: tlsServer.address, tls }), { log, baseDir: dir });
      sources.push(made);
      return made;
    }

    it("calls a backend whose certificate the configured CA signed, checked against serverName", async () => {
      const tools = await tlsSource("secure", { ca: "ca.pem", serverName: "tools.test" }).list(new AbortController().signal);
      expect(JSON.parse((await byName(tools, "secure__lookup").execute({ key: "t" }, context().ctx)) as string)).toMatchObject({ key: "t", server: kind });
    });

    it("refuses a backend whose certificate another CA signed, and plaintext to a TLS backend", async () => {
      for (const source of [tlsSource("untrusted", { ca: "other-ca.pem", serverName: "tools.test" }), tlsSource("plain", false)]) {
        await expect(source.list(new AbortController().signal)).rejects.toMatchObject({ code: Code.Unavailable });
      }
    });
  });
});

describe("BackendToolSource configuration", () => {
  it("names the missing PEM file when TLS files cannot be read", () => {
    const dir = tempDir("qingyu-tool-pem-");
    const config = BackendToolsSchema.parse({ address: "127.0.0.1:1", tls: { ca: "missing-ca.pem" } });
    expect(() => new BackendToolSource("billing", config, { log: pino({ level: "silent" }), baseDir: dir })).toThrow(
      `invalid config: tools.backends.billing.tls.ca: cannot read ${join(dir, "missing-ca.pem")}`,
    );
  });

  it("refuses a backend name that cannot prefix a tool name", async () => {
    const config = BackendToolsSchema.parse({ address: `127.0.0.1:${await closedPort()}` });
    expect(() => new BackendToolSource("bad name", config, { log: pino({ level: "silent" }), baseDir: "." })).toThrow("tools.backends.bad name");
  });

  it("fails ListTools on an address nothing listens on with UNAVAILABLE naming the address", async () => {
    const address = `127.0.0.1:${await closedPort()}`;
    const nowhere = new BackendToolSource("nowhere", BackendToolsSchema.parse({ address }), { log: pino({ level: "silent" }), baseDir: "." });
    try {
      await expect(nowhere.list(new AbortController().signal)).rejects.toThrow(`backend "nowhere" (${address}) ListTools failed: UNAVAILABLE`);
    } finally {
      nowhere.dispose();
    }
  });
});
