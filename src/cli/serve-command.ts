import { App } from "../app.ts";
import { ConfigError, loadConfig, type ConfigOverrides } from "../config/load.ts";
import { workerCount } from "../config/workers-rules.ts";
import { Supervisor } from "../cluster/supervisor.ts";
import { reportToSupervisor, workerSlot } from "../cluster/worker.ts";
import { createLogger } from "../log.ts";
import { Telemetry } from "../telemetry/setup.ts";
import { env, exit, onReloadSignal, onShutdownSignal, onUnhandledRejection, runtimeName } from "../runtime/process.ts";
import { commandArgs, portFlag, workersFlag } from "./args.ts";
import { bindFailure } from "./bind-error.ts";
import { usage } from "./usage.ts";

/** A port the server could not bind; the CLI prints the one line and exits 2. */
export class BindError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BindError";
  }
}

/** `qingyu serve`: runs the server until SIGTERM or SIGINT. */
export async function serve(args: readonly string[], stdoutIsTTY: boolean): Promise<void> {
  const parsed = commandArgs("serve", args, {
    config: { type: "string" },
    port: { type: "string" },
    "http-port": { type: "string" },
    workers: { type: "string" },
  });
  if (parsed.help) {
    process.stdout.write(usage("serve"));
    return;
  }
  const { values } = parsed;
  const overrides: ConfigOverrides = {
    port: portFlag("serve", "--port", values.port),
    httpPort: portFlag("serve", "--http-port", values["http-port"]),
    workers: workersFlag("serve", values.workers),
  };
  const { config, baseDir } = loadConfig(values.config, env, overrides);
  const logger = createLogger({ level: config.log.level, format: config.log.format, stdoutIsTTY });
  const { flush } = logger;
  const workers = workerCount(config.server.workers);
  const slot = workerSlot();
  if (workers > 1 && slot === undefined) {
    if (runtimeName !== "node")
      throw new ConfigError(`server.workers: ${workers} needs Node's cluster module, which ${runtimeName} does not have: run one worker per process there`);
    // This process only supervises: the workers load the config, the plugins and the stores themselves.
    await new Supervisor({ workers, host: config.server.host, metricsPort: config.server.metricsPort, log: logger.log, flush }).start();
    return;
  }
  const log = slot === undefined ? logger.log : logger.log.child({ worker: slot });
  onUnhandledRejection((reason) => log.error({ err: reason }, "unhandled promise rejection (a plugin bug?); the server keeps serving"));
  // Tracing from the standard OTEL_* variables (off unless they ask for it); metrics for the admin port.
  const telemetry = await Telemetry.start({ env, prometheus: config.server.metricsPort !== null, log });
  const app = await App.create({
    config,
    baseDir,
    env,
    log,
    telemetry,
    reread: () => loadConfig(values.config, env, overrides),
    // A worker's metrics are served by its supervisor, for all of them on one port.
    serveMetrics: slot === undefined,
  });
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
  let ports;
  try {
    ports = await app.start();
  } catch (err) {
    const line = bindFailure(err, config.server);
    if (line) throw new BindError(line, { cause: err });
    throw err;
  }
  if (slot !== undefined) {
    log.info({ ...ports, host: config.server.host, runtime: runtimeName }, "worker listening");
    reportToSupervisor(ports, telemetry.prometheus);
  } else {
    // Always announced, whatever log.level says: operators and scripts look for it.
    log.child({}, { level: "info" }).info({ ...ports, host: config.server.host, runtime: runtimeName }, "listening");
  }
  flush();
}
