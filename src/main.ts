// The `qingyu` command line: routes to a command, each imported only when run
// (`qingyu --help` must not load the server), and turns the errors a user can
// act on into one line and an exit status.
import { argv, env, exit, runtimeName } from "./runtime/process.ts";
import { UsageError } from "./cli/args.ts";
import { isCommand, usage, type CommandName } from "./cli/usage.ts";

function fail(message: string, status: number): never {
  process.stderr.write(`qingyu: ${message}\n`);
  exit(status);
}

async function run(command: CommandName, args: readonly string[]): Promise<void> {
  switch (command) {
    case "serve":
      return (await import("./cli/serve-command.ts")).serve(args, process.stdout.isTTY === true);
    case "check":
    case "plugins":
      return (await import("./cli/config-commands.ts")).configCommand(command, args);
    case "reload":
      return (await import("./cli/reload-command.ts")).reload(args);
    case "health": {
      // bin/qingyu.mjs runs it without this module on Node; here for Deno and --help.
      const parsed = (await import("./cli/args.ts")).commandArgs("health", args, { config: { type: "string" }, address: { type: "string" } });
      if (parsed.help) return void process.stdout.write(usage("health"));
      const status = await (await import("./cli/health-probe.mjs")).runHealth(args, env);
      if (status !== 0) exit(status);
      return;
    }
    case "hash-key":
      return (await import("./cli/hash-key-command.ts")).hashKey(args);
    case "help": {
      const [about] = args;
      if (about !== undefined && !isCommand(about)) throw new UsageError(`help: unknown command "${about}"`);
      return void process.stdout.write(usage(about));
    }
    case "version":
      return void process.stdout.write((await import("./cli/version.ts")).versionLine(runtimeName, process.versions.deno ?? process.version));
  }
}

/** The command and its arguments: `qingyu` alone serves; `qingyu --port 6000` too; -h, --help and -v, --version answer at once. */
function route(args: readonly string[]): [CommandName, readonly string[]] {
  const [first, ...rest] = args;
  if (first === undefined) return ["serve", []];
  if (first === "-h" || first === "--help") return ["help", rest];
  if (first === "-v" || first === "--version") return ["version", rest];
  if (first.startsWith("-")) return ["serve", args];
  if (isCommand(first)) return [first, rest];
  throw new UsageError(`unknown command "${first}"`);
}

// Failures a user can act on, each one line, and their exit status. A class is imported only
// when an error bears its name: the module that threw it has loaded it already, and a usage
// error must not load the server.
const KNOWN: Readonly<Record<string, { status: number; type: () => Promise<abstract new (...args: never[]) => Error> }>> = {
  ConfigError: { status: 2, type: async () => (await import("./config/load.ts")).ConfigError },
  PluginError: { status: 2, type: async () => (await import("./plugin-host/loader.ts")).PluginError },
  BindError: { status: 2, type: async () => (await import("./cli/serve-command.ts")).BindError },
  AddressError: { status: 2, type: async () => (await import("./cli/server-address.mjs")).AddressError },
  StartupError: { status: 1, type: async () => (await import("./app.ts")).StartupError },
};

try {
  const [command, args] = route(argv);
  await run(command, args);
} catch (err) {
  if (err instanceof UsageError) fail(`${err.message}\n${usage(err.command)}`, 2);
  const known = err instanceof Error && Object.hasOwn(KNOWN, err.name) ? KNOWN[err.name] : undefined;
  if (known && err instanceof (await known.type())) fail(err.message, known.status);
  const { shownMessage } = await import("./errors.ts");
  // A bug: the stack, under the message a person reads.
  const stack = err instanceof Error && err.stack ? `\n${err.stack.split("\n").slice(1).join("\n")}` : "";
  fail(`failed to start: ${shownMessage(err)}${stack}`, 1);
}
