import { parseArgs } from "node:util";
import { App } from "./app.ts";
import { ConfigError, loadConfig } from "./config/load.ts";
import { createLogger } from "./log.ts";
import { PluginError } from "./plugins/loader.ts";
import { argv, env, exit, onShutdownSignal, runtimeName } from "./runtime/process.ts";

const USAGE = `usage: qingyu serve [--config FILE] [--port N] [--http-port M]

  --config FILE    YAML or JSON config (default: built-in defaults, echo agent only)
  --port N         gRPC port (default 50051; env PORT)
  --http-port M    Connect / gRPC-Web port (default 8080; env HTTP_PORT)`;

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
  let values: { config?: string; port?: string; "http-port"?: string };
  try {
    ({ values } = parseArgs({
      args,
      options: { config: { type: "string" }, port: { type: "string" }, "http-port": { type: "string" } },
      strict: true,
    }));
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`, 2);
  }
  const { config, baseDir } = loadConfig(values.config, env, {
    port: port("--port", values.port),
    httpPort: port("--http-port", values["http-port"]),
  });
  const { log, flush } = createLogger(config.log.level);
  const app = await App.create({ config, baseDir, env, log });
  const ports = await app.start();
  // Always announced, whatever log.level says: operators and scripts look for it.
  log.child({}, { level: "info" }).info({ ...ports, runtime: runtimeName }, "listening");
  flush();
  onShutdownSignal((signal) => {
    log.info({ signal }, "shutting down");
    app.shutdown().then(
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
}

const [command = "serve", ...rest] = argv;
try {
  if (command === "serve") await serve(rest);
  else if (command === "--help" || command === "help") process.stdout.write(`${USAGE}\n`);
  else if (command.startsWith("--")) await serve(argv.slice());
  else fail(`unknown command "${command}"\n${USAGE}`, 2);
} catch (err) {
  if (err instanceof ConfigError || err instanceof PluginError) fail(err.message, 2);
  fail(`failed to start: ${(err as Error).stack ?? String(err)}`, 1);
}
