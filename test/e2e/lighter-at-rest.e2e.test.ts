// Lighter at rest (#18): a server loads the libraries of Redis, PostgreSQL, JWT and the
// OpenTelemetry SDK only when its config asks for them. Which modules a server loaded is
// read from Node's own module hooks (fixtures/record-modules.mjs, preloaded through
// NODE_OPTIONS): the server exposes nothing for it. Node only: Deno has no such hooks.
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { TestClient, type CallOptions } from "../support/grpc-client.ts";
import { runtime, serveFile, startServer, type ServerProcess } from "../support/server-process.ts";
import { databaseUrl, redisUrl } from "../support/services.ts";
import { tempDir } from "../support/temp-dirs.ts";

const A = AgentService.method;
const S = SessionService.method;
const root = resolve(import.meta.dirname, "../..");
const RECORDER = pathToFileURL(join(root, "test/fixtures/record-modules.mjs")).href;
/** What a config that names no Redis, PostgreSQL, JWT, telemetry or usable openai provider must not load. */
const UNCONFIGURED = ["ioredis", "pg", "jose", "@opentelemetry/sdk-node", "undici"];
/** What the built server (dist/) with no TypeScript plugin does not load either. */
const UNCOMPILED = ["tsx", "esbuild", "ajv", "pino-pretty"];

/**
 * The environment of a server that records its modules into a fresh file: none of the
 * caller's Redis, PostgreSQL, OTEL_* or HOST settings, so only the config decides.
 */
function recording(): { env: Record<string, string>; file: string } {
  const file = join(tempDir("qingyu-e2e-modules-"), "modules.txt");
  writeFileSync(file, "");
  const env: Record<string, string> = { QINGYU_TEST_MODULES_FILE: file, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${RECORDER}`.trim() };
  for (const key of Object.keys(process.env)) if (/^(REDIS_URL|DATABASE_URL|OTEL_.*|OPENAI_.*|HOST)$/.test(key)) env[key] = "";
  return { env, file };
}

/** The modules of this repository's src/ and dist/ a stopped server loaded, as paths from the root. */
function ownModules(file: string): string[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((url) => url.startsWith(pathToFileURL(root).href) && !url.includes("/node_modules/"))
    .map((url) => url.slice(pathToFileURL(root).href.length + 1).replace(/\?.*$/, ""));
}

/** The npm packages a stopped server loaded modules of, by name. */
function packagesLoaded(file: string): Set<string> {
  const names = new Set<string>();
  for (const url of readFileSync(file, "utf8").split("\n")) {
    // The last node_modules/ in the path names the package (a nested copy counts as its own name).
    const match = /.*\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (match) names.add(decodeURIComponent(match[1]!));
  }
  return names;
}

describe.runIf(runtime === "node")("lighter at rest: libraries load only when the config names what they serve", () => {
  const servers: ServerProcess[] = [];
  const clients: TestClient[] = [];
  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop()));
  });

  it("npm start's config (config/example.yaml) serves a call without loading ioredis, pg, jose, the OpenTelemetry SDK or undici", async () => {
    const { env, file } = recording();
    const server = await serveFile(join(root, "config/example.yaml"), ["--port", "0", "--http-port", "0"], env);
    servers.push(server);
    const client = new TestClient(server.grpcPort);
    clients.push(client);
    const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "light" }, { timeoutMs: 10_000 });
    expect(res.result?.output).toBe("[history=0] light");
    expect(await server.stop()).toBe(0);

    const loaded = packagesLoaded(file);
    // The recorder sees what the server does load: an empty record would prove nothing.
    expect(loaded).toContain("@grpc/grpc-js");
    expect(UNCONFIGURED.filter((name) => loaded.has(name))).toEqual([]);
    // npm install built dist/ (npm test builds it first too): the server ran from it, with no TypeScript compiler.
    expect(UNCOMPILED.filter((name) => loaded.has(name))).toEqual([]);
    const own = ownModules(file);
    expect(own).toContain("dist/main.js");
    expect(own.filter((path) => path.startsWith("src/") && path.endsWith(".ts"))).toEqual([]);
  });

  it("QINGYU_FROM_SOURCE=1 runs src/ through tsx instead", async () => {
    const { env, file } = recording();
    const server = await serveFile(join(root, "config/example.yaml"), ["--port", "0", "--http-port", "0"], { ...env, QINGYU_FROM_SOURCE: "1" });
    servers.push(server);
    expect(await server.stop()).toBe(0);
    expect(packagesLoaded(file)).toContain("tsx");
    expect(ownModules(file)).toContain("src/main.ts");
  });

  it("the built server loads TypeScript plugins, and a JavaScript plugin that imports a .ts file beside it (a helper named _*, which is not a plugin)", async () => {
    const dir = tempDir("qingyu-e2e-ts-plugins-");
    const api = JSON.stringify(pathToFileURL(join(root, "packages/plugin-api/dist/index.js")).href);
    writeFileSync(join(dir, "_shout.ts"), `export const shout = (text: string): string => text.toUpperCase();\n`);
    writeFileSync(
      join(dir, "loud.mjs"),
      `import { definePlugin } from ${api};
import { shout } from "./_shout.ts";
export default definePlugin({ name: "loud", kind: "middleware", setup: () => ({ name: "loud", async *process(ctx, next) {
  for await (const e of next()) yield e.type === "completed" ? { ...e, result: { ...e.result, output: shout(e.result.output) } } : e;
} }) });\n`,
    );
    const config = join(dir, "server.yaml");
    writeFileSync(
      config,
      `server: { host: 127.0.0.1 }\nlog: { level: warn }\npipeline: [loud]\nplugins: { dirs: [${JSON.stringify(dir)}] }\nagents: [{ id: echo, provider: echo, model: echo-1 }]\n`,
    );
    const { env, file } = recording();
    const server = await serveFile(config, ["--port", "0", "--http-port", "0"], env);
    servers.push(server);
    const client = new TestClient(server.grpcPort);
    clients.push(client);
    const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "quiet" }, { timeoutMs: 10_000 });
    expect(res.result?.output).toBe("[HISTORY=0] QUIET");
    expect(await server.stop()).toBe(0);
    expect(ownModules(file)).toContain("dist/main.js");
    expect(packagesLoaded(file)).toContain("tsx");
  });

  it("a config with Redis sessions, a PostgreSQL URL, JWT auth, metrics and an openai agent loads them all, and its sessions live in Redis", async () => {
    const secret = randomBytes(32).toString("hex");
    const prefix = `qingyu:e2e:at-rest:${randomUUID()}:`;
    const config = {
      log: { level: "warn" },
      server: { metricsPort: 0 },
      redis: { url: redisUrl() },
      postgres: { url: databaseUrl() },
      sessions: { store: "redis", redisKeyPrefix: prefix },
      pipeline: [{ plugin: "auth", options: { jwt: { algorithms: ["HS256"], secret } } }, "validation"],
      providers: { echo: { plugin: "echo" }, openai: { plugin: "openai", options: { baseUrl: "http://127.0.0.1:9/v1", apiKey: "unused" } } },
      agents: [
        { id: "echo", provider: "echo", model: "echo-1" },
        { id: "assistant", provider: "openai", model: "m" },
      ],
      plugins: { dirs: [] },
    };
    const redis = new Redis(redisUrl());
    try {
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: "HS256" })
        .setSubject("dana")
        .setExpirationTime("10m")
        .sign(new TextEncoder().encode(secret));
      const as: CallOptions = { metadata: { authorization: `Bearer ${token}` }, timeoutMs: 10_000 };

      const { env, file } = recording();
      const first = await startServer(config, env);
      servers.push(first);
      const client = new TestClient(first.grpcPort);
      clients.push(client);
      const { session } = await client.unary(SessionService, S.createSession, { agentId: "echo" }, as);
      const sessionId = session!.sessionId;
      await client.unary(AgentService, A.execute, { sessionId, task: "remember me" }, as);
      const metricsPort = first.lines.map((l) => JSON.parse(l) as { msg?: string; metricsPort?: number }).find((e) => e.msg === "listening")!.metricsPort;
      expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).status).toBe(200);
      expect(await first.stop()).toBe(0);
      expect(UNCONFIGURED.filter((name) => !packagesLoaded(file).has(name))).toEqual([]);

      // A new process finds the conversation: it was kept in Redis, not in the first one's memory.
      const second = await startServer(config, recording().env);
      servers.push(second);
      const again = new TestClient(second.grpcPort);
      clients.push(again);
      const res = await again.unary(AgentService, A.execute, { sessionId, task: "and now?" }, as);
      expect(res.result?.output).toBe("[history=2] and now?");
    } finally {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });
});
