import { parseArgs } from "node:util";
import { App, StartupError } from "./app.ts";
import { checkHealth } from "./cli/health-command.ts";
import { checkCommand, type CommandOutcome } from "./cli/check-command.ts";
import { describePlugins } from "./cli/plugins-command.ts";
import { requestReload } from "./cli/reload-command.ts";
import { ConfigError, loadConfig, type ConfigOverrides } from "./config/load.ts";
import { createLogger } from "./log.ts";
import { Telemetry } from "./telemetry/setup.ts";
import { PluginError } from "./plugin-host/loader.ts";
import { hashApiKey } from "./plugins/builtin/auth/api-keys.ts";
import { argv, env, exit, onReloadSignal, onShutdownSignal, onUnhandledRejection, runtimeName } from "./runtime/process.ts";

const USAGE = `usage:
  qingyu serve [--config FILE] [--port N] [--http-port M]
      --config FILE    YAML or JSON config (default: built-in defaults, echo agent only)
      --port N         gRPC port (default 50051; env PORT)
      --http-port M    Connect / gRPC-Web port (default 8080; env HTTP_PORT)
      SIGHUP re-reads the config and plugins without dropping calls.
  qingyu check [--config FILE]
      Loads the config, reads the TLS files, imports every plugin and validates every entry's
      options as serve would, without opening a port or a connection; exit status 2 with serve's messages.
  qingyu plugins [--config FILE]
      Lists the plugins discovered, their kind, status and source, and the pipeline order;
      problems serve would stop at go to stderr (exit status 2).
  qingyu reload [--address HOST:PORT] [--token TOKEN]
      Asks a running server to reload (AdminService.Reload); default address 127.0.0.1:50051,
      token from --token or QINGYU_TOKEN (needed when auth is configured: an admin's key or JWT).
  qingyu health [--address HOST:PORT]
      Exits 0 when the server's health check says SERVING, 1 otherwise (for container health checks).
  qingyu hash-key [KEY]
      Prints the SHA-256 to put in auth.apiKeys[].sha256 (reads KEY from stdin when not given).`;

function fail(message: string, status: number): never {
  process.stderr.write(`qingyu: ${message}\n`);
  exit(status);
}

function port(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) > 65535) fail(`${flag}: expected a port number 0-65535, got "${value}"`, 2);
  return Number(value);
}

async function serve(args: string[]): Promise<void> {
  const { values } = options(args, { config: { type: "string" }, port: { type: "string" }, "http-port": { type: "string" } });
  const overrides: ConfigOverrides = {
    port: port("--port", values.port),
    httpPort: port("--http-port", values["http-port"]),
  };
  const { config, baseDir } = loadConfig(values.config, env, overrides);
  const { log, flush } = createLogger(config.log.level);
  onUnhandledRejection((reason) => log.error({ err: reason }, "unhandled promise rejection (a plugin bug?); the server keeps serving"));
  // Tracing from the standard OTEL_* variables (off unless they ask for it); metrics for the admin port.
  const telemetry = await Telemetry.start({ env, prometheus: config.server.metricsPort !== null, log });
  const app = await App.create({ config, baseDir, env, log, telemetry, reread: () => loadConfig(values.config, env, overrides) });
  // Handlers first: a signal sent as soon as "listening" is out must not meet the default action (exit).
  // A failed reload is logged by the runtime and the old pipeline keeps serving.
  onReloadSignal(
    () =>
      void app.reload().then(
        () => flush(),
        () => flush(),
      ),
  );
  onShutdownSignal((signal) => {
    log.info({ signal }, "shutting down");
    app
      .shutdown()
      .then(() => telemetry.shutdown().catch((err: unknown) => log.warn({ err }, "telemetry flush failed")))
      .then(
        // The exit hook flushes the log.
        () => {
          log.info("stopped");
          exit(0);
        },
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          exit(1);
        },
      );
  });
  const ports = await app.start();
  // Always announced, whatever log.level says: operators and scripts look for it.
  log.child({}, { level: "info" }).info({ ...ports, runtime: runtimeName }, "listening");
  flush();
}

function options<T extends Record<string, { type: "string" }>>(args: string[], spec: T, positionals = false) {
  try {
    return parseArgs({ args, options: spec, strict: true, allowPositionals: positionals });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`, 2);
  }
}

async function plugins(args: string[]): Promise<void> {
  const { values } = options(args, { config: { type: "string" } });
  const { config, baseDir } = loadConfig(values.config, env);
  finish(await describePlugins(config, baseDir, env));
}

async function check(args: string[]): Promise<void> {
  const { values } = options(args, { config: { type: "string" } });
  const { config, baseDir } = loadConfig(values.config, env);
  finish(await checkCommand(config, baseDir, env, values.config ?? "(built-in defaults)"));
}

function finish({ stdout, stderr, status }: CommandOutcome): void {
  process.stdout.write(stdout);
  process.stderr.write(stderr);
  if (status !== 0) exit(status);
}

async function reload(args: string[]): Promise<void> {
  const { values } = options(args, { address: { type: "string" }, token: { type: "string" } });
  try {
    const res = await requestReload(values.address ?? "127.0.0.1:50051", values.token ?? env.QINGYU_TOKEN);
    process.stdout.write(`reloaded: generation ${res.generation}, pipeline: ${res.pipeline.join(" → ") || "(empty)"}\n`);
    for (const warning of res.warnings) process.stdout.write(`warning: ${warning}\n`);
  } catch (err) {
    fail(`reload failed: ${(err as Error).message}`, 1);
  }
}

async function health(args: string[]): Promise<void> {
  const { values } = options(args, { address: { type: "string" } });
  try {
    const { serving, status } = await checkHealth(values.address ?? "127.0.0.1:50051");
    process.stdout.write(`${status}\n`);
    exit(serving ? 0 : 1);
  } catch (err) {
    fail(`health check failed: ${(err as Error).message}`, 1);
  }
}

async function hashKey(args: string[]): Promise<void> {
  const { positionals } = options(args, {}, true);
  let key = positionals[0];
  if (key === undefined) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    key = Buffer.concat(chunks).toString("utf8").trim();
  }
  if (!key) fail("hash-key: no key given", 2);
  process.stdout.write(`${hashApiKey(key)}\n`);
}

const [command = "serve", ...rest] = argv;
try {
  if (command === "serve") await serve(rest);
  else if (command === "plugins") await plugins(rest);
  else if (command === "check") await check(rest);
  else if (command === "reload") await reload(rest);
  else if (command === "hash-key") await hashKey(rest);
  else if (command === "health") await health(rest);
  else if (command === "--help" || command === "help") process.stdout.write(`${USAGE}\n`);
  else if (command.startsWith("--")) await serve(argv.slice());
  else fail(`unknown command "${command}"\n${USAGE}`, 2);
} catch (err) {
  if (err instanceof ConfigError || err instanceof PluginError) fail(err.message, 2);
  if (err instanceof StartupError) fail(err.message, 1);
  fail(`failed to start: ${(err as Error).stack ?? String(err)}`, 1);
}
