import { afterAll, describe, it, expect } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "qingyu-config-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
/** Writes `text` to a fresh file with the given extension and returns its path. */
function file(text: string, ext = ".yaml"): string {
  const path = join(dir, `config-${++counter}${ext}`);
  writeFileSync(path, text);
  return path;
}

/** The ConfigError `run` throws. */
function configError(run: () => unknown): ConfigError {
  let err: unknown;
  try {
    run();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe("loadConfig: defaults", () => {
  it("with no file and no environment gives the documented defaults", () => {
    const { config, baseDir } = loadConfig(undefined, {});
    expect(config.server).toEqual({
      host: "0.0.0.0",
      port: 50051,
      httpPort: 8080,
      metricsPort: null,
      shutdownGraceMs: 10_000,
      workers: 1,
      reflection: true,
      limits: {
        maxMessageBytes: 4 * 1024 * 1024,
        maxMetadataBytes: 16 * 1024,
        defaultDeadlineMs: 300_000,
        maxDeadlineMs: 900_000,
        maxConcurrentStreams: 100,
        keepaliveTimeMs: 7_200_000,
        keepaliveTimeoutMs: 20_000,
        maxConnectionIdleMs: 300_000,
        maxConnectionAgeMs: 1_800_000,
        maxMapEntries: 256,
        maxMapBytes: 64 * 1024,
        maxConnections: 10_000,
      },
    });
    expect(config.log.level).toBe("info");
    expect(config.pipeline).toEqual(["logging", "validation"]);
    expect(config.providers).toEqual({ echo: { plugin: "echo" } });
    expect(config.plugins.dirs).toEqual(["plugins"]);
    expect(config.sessions).toMatchObject({ store: "memory", ttlSeconds: 3600, historyMessages: 20 });
    expect(config.executor.retry).toEqual({ maxAttempts: 3, baseDelayMs: 200, maxDelayMs: 10_000 });
    expect(config.runs).toMatchObject({ approvalTimeoutSeconds: 86_400, unknownOutcome: "model" });
    expect(config.redis.url).toBeUndefined();
    expect(config.postgres.url).toBeUndefined();
    expect(baseDir).toBe(process.cwd());
  });

  it("an empty file gives the defaults, and relative paths resolve from the file's directory", () => {
    const { config, baseDir } = loadConfig(file(""), {});
    expect(config.server.port).toBe(50051);
    expect(baseDir).toBe(dir);
  });

  it("fills defaults around the keys a YAML file sets", () => {
    const path = file(`
server:
  port: 6000
agents:
  - id: helper
    provider: echo
    model: echo-1
`);
    const { config } = loadConfig(path, {});
    expect(config.server.port).toBe(6000);
    expect(config.server.httpPort).toBe(8080);
    expect(config.agents).toEqual([
      {
        id: "helper",
        description: "",
        provider: "echo",
        model: "echo-1",
        models: [],
        systemPrompt: "",
        defaults: {},
        requireEnv: [],
        limits: { maxSteps: 10, maxToolCalls: 64, toolTimeoutMs: 60_000, maxParallelTools: 8 },
        tools: [],
        approval: [],
      },
    ]);
  });

  it("reads a .json file as JSON", () => {
    const { config } = loadConfig(file(JSON.stringify({ server: { port: 7001, httpPort: null } }), ".json"), {});
    expect(config.server.port).toBe(7001);
    expect(config.server.httpPort).toBeNull();
  });
});

describe("loadConfig: environment and CLI overrides", () => {
  const env = {
    PORT: "6100",
    HTTP_PORT: "6101",
    LOG_LEVEL: "debug",
    REDIS_URL: "redis://cache:6379/0",
    DATABASE_URL: "postgres://db/qingyu",
  };

  it("applies PORT, HTTP_PORT, LOG_LEVEL, REDIS_URL and DATABASE_URL", () => {
    const { config } = loadConfig(undefined, env);
    expect(config.server.port).toBe(6100);
    expect(config.server.httpPort).toBe(6101);
    expect(config.log.level).toBe("debug");
    expect(config.redis.url).toBe("redis://cache:6379/0");
    expect(config.postgres.url).toBe("postgres://db/qingyu");
  });

  it("the environment wins over the file, which keeps its other keys", () => {
    const path = file(`
server:
  port: 5000
  host: 127.0.0.1
log:
  level: warn
redis:
  url: redis://file
`);
    const { config } = loadConfig(path, env);
    expect(config.server).toMatchObject({ port: 6100, httpPort: 6101, host: "127.0.0.1" });
    expect(config.log.level).toBe("debug");
    expect(config.redis.url).toBe("redis://cache:6379/0");
  });

  it("ignores variables it does not know and empty ones", () => {
    const { config } = loadConfig(file("server:\n  port: 5000\n"), { PORT: "", SOMETHING_ELSE: "x" });
    expect(config.server.port).toBe(5000);
  });

  it("CLI overrides win over both the file and the environment", () => {
    const path = file("server:\n  port: 5000\n  httpPort: 5001\n");
    const { config } = loadConfig(path, env, { port: 7000, httpPort: 7001 });
    expect(config.server.port).toBe(7000);
    expect(config.server.httpPort).toBe(7001);
  });

  it("a CLI override of 0 (pick a free port) is applied, not treated as absent", () => {
    const { config } = loadConfig(undefined, env, { port: 0 });
    expect(config.server.port).toBe(0);
    expect(config.server.httpPort).toBe(6101);
  });

  it("a non-numeric PORT is a ConfigError naming the variable", () => {
    const err = configError(() => loadConfig(undefined, { PORT: "http" }));
    expect(err.message).toContain("PORT");
    expect(err.message).toContain('"http"');
  });

  it("a bad LOG_LEVEL is a ConfigError naming log.level", () => {
    expect(configError(() => loadConfig(undefined, { LOG_LEVEL: "loud" })).message).toContain("log.level");
  });

  it("a PORT out of range is a ConfigError naming server.port", () => {
    expect(configError(() => loadConfig(undefined, { PORT: "70000" })).message).toContain("server.port");
  });
});

describe("loadConfig: errors", () => {
  it("an unknown key is a ConfigError naming the key and where it is", () => {
    const err = configError(() => loadConfig(file("server:\n  prot: 50051\n"), {}));
    expect(err.message).toContain('server: unknown key "prot"');
  });

  it("an unknown top-level key and a nested unknown key are each named", () => {
    const path = file(`
servr: {}
agents:
  - id: helper
    provider: echo
    model: m
    sytemPrompt: hi
`);
    const err = configError(() => loadConfig(path, {}));
    expect(err.message).toContain('unknown key "servr"');
    expect(err.message).toContain('agents.0: unknown key "sytemPrompt"');
  });

  it.each([
    ["a string", '"abc"'],
    ["too large", "70000"],
    ["negative", "-1"],
    ["fractional", "80.5"],
  ])("a port that is %s is a ConfigError naming server.port", (_label, value) => {
    const path = file(`server:\n  port: ${value}\n`);
    const err = configError(() => loadConfig(path, {}));
    expect(err.message).toContain("server.port");
    expect(err.message).toContain(path);
  });

  it("runs.unknownOutcome is model or approval, and runs.approvalTimeoutSeconds a positive whole number of seconds; another value names the key", () => {
    const { config } = loadConfig(file("runs:\n  unknownOutcome: approval\n  approvalTimeoutSeconds: 600\n"), {});
    expect(config.runs).toMatchObject({ unknownOutcome: "approval", approvalTimeoutSeconds: 600 });
    expect(configError(() => loadConfig(file("runs:\n  unknownOutcome: ask\n"), {})).message).toContain("runs.unknownOutcome");
    expect(configError(() => loadConfig(file("runs:\n  approvalTimeoutSeconds: 0\n"), {})).message).toContain("runs.approvalTimeoutSeconds");
    expect(configError(() => loadConfig(file("agents:\n  - {id: a, provider: echo, model: m, approval: ['']}\n"), {})).message).toContain(
      "agents.0.approval.0",
    );
  });

  it("a bad value deep in a list names its full path", () => {
    const path = file(`
agents:
  - id: ok
    provider: echo
    model: m
  - id: "bad id!"
    provider: echo
    model: m
`);
    expect(configError(() => loadConfig(path, {})).message).toContain("agents.1.id");
  });

  it("a batch size the process-wide batch bound could never admit is a ConfigError naming executor.batch.maxItems", () => {
    const path = file("executor:\n  batch: { maxItems: 100, maxItemsInFlight: 10, maxQueuedItems: 20 }\n");
    expect(configError(() => loadConfig(path, {})).message).toContain("executor.batch.maxItems: is 100, more than maxItemsInFlight + maxQueuedItems (30)");
  });

  it("invalid YAML is a ConfigError naming the file", () => {
    const path = file("server:\n  port: [1, 2\n  host: x\n");
    const err = configError(() => loadConfig(path, {}));
    expect(err.message).toContain(path);
    expect(err.message).toContain("YAML");
    expect(err.cause).toBeDefined();
  });

  it("invalid JSON is a ConfigError naming the file", () => {
    const path = file("{ server: ", ".json");
    const err = configError(() => loadConfig(path, {}));
    expect(err.message).toContain(path);
    expect(err.message).toContain("JSON");
  });

  it("a file whose top level is not a mapping is a ConfigError", () => {
    expect(configError(() => loadConfig(file("- a\n- b\n"), {})).message).toContain("mapping");
    expect(configError(() => loadConfig(file("just a string\n"), {})).message).toContain("mapping");
  });

  it("a missing file is a ConfigError naming it", () => {
    const path = join(dir, "does-not-exist.yaml");
    const err = configError(() => loadConfig(path, {}));
    expect(err.message).toContain(path);
    expect(err.name).toBe("ConfigError");
  });
});

describe("loadConfig: servers a store or bus needs", () => {
  it("refuses a Redis or PostgreSQL store, or the Redis bus, without the server's URL, naming the key and what needs it", () => {
    const err = configError(() => loadConfig(file("sessions: { store: redis+postgres }\nevents: { bus: redis }\n"), {}));
    expect(err.message).toContain("redis.url: is required by events.bus: redis (or set REDIS_URL)");
    expect(err.message).toContain("postgres.url: is required by sessions.store: redis+postgres (or set DATABASE_URL)");
    expect(configError(() => loadConfig(file("sessions: { store: redis }\n"), {})).message).toContain("redis.url: is required by sessions.store: redis");
  });

  it("takes the URLs from REDIS_URL and DATABASE_URL", () => {
    const { config } = loadConfig(file("sessions: { store: redis+postgres }\nevents: { bus: redis }\n"), {
      REDIS_URL: "redis://r:6379",
      DATABASE_URL: "postgres://p/db",
    });
    expect([config.redis.url, config.postgres.url]).toEqual(["redis://r:6379", "postgres://p/db"]);
  });
});

describe("loadConfig: ${VAR} in values", () => {
  it("reads values from the environment, with defaults, typed as YAML types them", () => {
    const path = file(`
server:
  host: \${HOST:-127.0.0.1}
  port: \${GRPC_PORT:-5000}
agents:
  - id: a
    provider: echo
    model: \${MODEL:-echo-1}
`);
    expect(loadConfig(path, {}).config).toMatchObject({ server: { host: "127.0.0.1", port: 5000 }, agents: [{ model: "echo-1" }] });
    expect(loadConfig(path, { HOST: "0.0.0.0", GRPC_PORT: "6000", MODEL: "echo-2" }).config).toMatchObject({
      server: { host: "0.0.0.0", port: 6000 },
      agents: [{ model: "echo-2" }],
    });
  });

  it("a variable that is not set and has no default is a ConfigError naming the file, the key path and the variable", () => {
    const path = file("providers:\n  openai:\n    plugin: openai\n    options: { baseUrl: '${OPENAI_BASE_URL}' }\n");
    expect(configError(() => loadConfig(path, {})).message).toBe(
      `invalid config (${path}):\n  providers.openai.options.baseUrl: environment variable OPENAI_BASE_URL is not set (the value says \${OPENAI_BASE_URL}): set it, or give a default with \${OPENAI_BASE_URL:-default}`,
    );
  });

  it("a substituted value is validated like a written one: the ConfigError names the key", () => {
    expect(configError(() => loadConfig(file("server:\n  port: ${GRPC_PORT}\n"), { GRPC_PORT: "http" })).message).toContain("server.port");
  });

  it("LOG_FORMAT sets log.format (auto by default); another value is a ConfigError naming log.format", () => {
    expect(loadConfig(undefined, {}).config.log.format).toBe("auto");
    expect(loadConfig(undefined, { LOG_FORMAT: "pretty" }).config.log.format).toBe("pretty");
    expect(configError(() => loadConfig(undefined, { LOG_FORMAT: "xml" })).message).toContain("log.format");
  });
});

describe("the configurations the repository ships", () => {
  const root = join(import.meta.dirname, "../..");

  it("config/example.yaml binds 127.0.0.1 unless HOST says otherwise, and reads the openai endpoint and model from the environment", () => {
    const plain = loadConfig(join(root, "config/example.yaml"), {}).config;
    expect(plain.server.host).toBe("127.0.0.1");
    expect(plain.providers.openai!.options).toMatchObject({ baseUrl: "https://api.openai.com/v1" });
    expect(plain.agents.find((a) => a.id === "assistant")!.model).toBe("gpt-4o-mini");
    // Ollama, with no edit to the file.
    const ollama = loadConfig(join(root, "config/example.yaml"), {
      HOST: "0.0.0.0",
      OPENAI_BASE_URL: "http://127.0.0.1:11434/v1",
      OPENAI_MODEL: "llama3.2",
    }).config;
    expect(ollama.server.host).toBe("0.0.0.0");
    expect(ollama.providers.openai!.options).toMatchObject({ baseUrl: "http://127.0.0.1:11434/v1" });
    expect(ollama.agents.find((a) => a.id === "assistant")!.model).toBe("llama3.2");
  });

  it("config/example.yaml alerts on the server's own trouble, not on what callers cause (a cancel)", () => {
    const alerting = loadConfig(join(root, "config/example.yaml"), {}).config.eventHandlers.find((h) => typeof h === "object" && h.plugin === "alerting");
    const codes = (alerting as { options: { codes: string[] } }).options.codes;
    expect(codes).toContain("INTERNAL");
    expect(codes).toContain("UNAVAILABLE");
    for (const callers of ["CANCELLED", "INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"]) {
      expect(codes).not.toContain(callers);
    }
  });

  it("config/durable.yaml: redis+postgres sessions and the Redis bus, the URLs from REDIS_URL and DATABASE_URL, and says which is missing", () => {
    const { config } = loadConfig(join(root, "config/durable.yaml"), { REDIS_URL: "redis://r:6379/0", DATABASE_URL: "postgres://p/qingyu" });
    expect([config.sessions.store, config.events.bus, config.redis.url, config.postgres.url, config.sessions.postgresSchema]).toEqual([
      "redis+postgres",
      "redis",
      "redis://r:6379/0",
      "postgres://p/qingyu",
      "qingyu",
    ]);
    expect(configError(() => loadConfig(join(root, "config/durable.yaml"), { DATABASE_URL: "postgres://p/qingyu" })).message).toContain(
      "redis.url: environment variable REDIS_URL is not set",
    );
    expect(configError(() => loadConfig(join(root, "config/durable.yaml"), { REDIS_URL: "redis://r" })).message).toContain(
      "postgres.url: environment variable DATABASE_URL is not set",
    );
  });

  it("config/example.yaml (npm start) and config/compose.yaml (compose.yaml) are valid", () => {
    expect(loadConfig(join(root, "config/example.yaml"), {}).config.sessions.store).toBe("memory");
    const { config } = loadConfig(join(root, "config/compose.yaml"), { REDIS_URL: "redis://redis:6379", DATABASE_URL: "postgres://q@postgres/q" });
    expect([config.sessions.store, config.events.bus, config.server.metricsPort]).toEqual(["redis+postgres", "redis", 9464]);
  });
});

describe("loadConfig: server.workers", () => {
  it("takes a count or auto; more than one refuses stores kept in one process's memory, naming each and the fix", () => {
    expect(() => loadConfig(undefined, {}, { workers: 3 })).toThrow(
      /sessions\.store: memory keeps sessions in each worker's own memory with server\.workers: 3: set redis, postgres or redis\+postgres/,
    );
    const shared = { REDIS_URL: "redis://127.0.0.1:6379" };
    const path = file(JSON.stringify({ sessions: { store: "redis" }, events: { bus: "redis" } }), ".json");
    expect(loadConfig(path, shared, { workers: 2 }).config.server.workers).toBe(2);
    expect(loadConfig(path, shared, { workers: "auto" }).config.server.workers).toBe("auto");
  });
});
