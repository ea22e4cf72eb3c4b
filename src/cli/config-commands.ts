import { loadConfig } from "../config/load.ts";
import { env, exit } from "../runtime/process.ts";
import { commandArgs } from "./args.ts";
import { checkCommand, type CommandOutcome } from "./check-command.ts";
import { describePlugins } from "./plugins-command.ts";
import { usage } from "./usage.ts";

/** `qingyu check` and `qingyu plugins [--config FILE]`: read the config and plugins, start nothing. */
export async function configCommand(command: "check" | "plugins", args: readonly string[]): Promise<void> {
  const parsed = commandArgs(command, args, { config: { type: "string" } });
  if (parsed.help) return void process.stdout.write(usage(command));
  const file = parsed.values.config;
  const { config, baseDir } = loadConfig(file, env);
  finish(command === "check" ? await checkCommand(config, baseDir, env, file ?? "(built-in defaults)") : await describePlugins(config, baseDir, env));
}

function finish({ stdout, stderr, status }: CommandOutcome): void {
  process.stdout.write(stdout);
  process.stderr.write(stderr);
  if (status !== 0) exit(status);
}
