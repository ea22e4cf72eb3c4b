import type { Config } from "../config/schema.ts";
import { discoverFor } from "../app.ts";
import { checkConfig, type CheckReport } from "../plugin-host/check.ts";
import { refEnabled, refName } from "../plugin-host/instantiate.ts";
import { loadTls } from "../transport/tls.ts";

/** What a CLI command prints and how it exits. */
export interface CommandOutcome {
  stdout: string;
  stderr: string;
  status: number;
}

/**
 * `qingyu check`: reads the TLS files, imports every plugin and validates every
 * config entry the way `serve` does, opening no port and no connection. Exit status 2 with
 * serve's messages when serve would not start.
 */
export async function checkCommand(config: Config, baseDir: string, env: Readonly<Record<string, string | undefined>>, label: string): Promise<CommandOutcome> {
  // Every plugin that does not load is reported, not only the first; what config says of it is then not checked.
  const unloadable: string[] = [];
  const catalog = await discoverFor(config, baseDir, undefined, (err) => unloadable.push(err.message));
  const report = await checkConfig(config, catalog, env);
  if (unloadable.length) report.errors.unshift(...unloadable);
  // The certificate files serve reads first (reading them opens nothing).
  try {
    loadTls(config.server.tls, baseDir);
  } catch (err) {
    report.errors.unshift((err as Error).message);
  }
  const problems = formatProblems(report);
  if (report.errors.length) {
    return { stdout: "", stderr: `${problems}qingyu: ${label}: ${count(report.errors.length, "problem")}; serve would not start\n`, status: 2 };
  }
  const pipeline = config.pipeline.filter(refEnabled).map(refName);
  return {
    stdout: `${label}: ok (${count(catalog.size, "plugin")} loaded, ${count(report.checked, "config entry", "config entries")} valid; pipeline: ${pipeline.join(" → ") || "(empty)"})\n`,
    stderr: problems,
    status: 0,
  };
}

/** Errors as serve prints them (`qingyu: …`), then warnings. */
export function formatProblems(report: CheckReport): string {
  return [...report.errors.map((e) => `qingyu: ${e}\n`), ...report.warnings.map((w) => `warning: ${w}\n`)].join("");
}

function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
