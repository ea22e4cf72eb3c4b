// `npm run bench:tools`: the tools phase of `npm run bench` alone (issue #16's
// speed targets, bench/tools-phase.ts), about 55 s. BENCH_TOOLS_ROUNDS (default
// 5) rounds of h2load runs of BENCH_TOOLS_SECONDS (default 1) each, after 1 s
// of warm-up. Writes bench/results/tools.json.
import { execFileSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { installCleanup, root, stopAll } from "./children.ts";
import { writeJson } from "./report.ts";
import { toolsPhase, toolsSettings, toolTargetRows, toolTargetsTable } from "./tools-phase.ts";

const TASK = "summarise the quarterly report for the board in three short sentences";

async function main(): Promise<void> {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
  } catch {
    process.stderr.write("bench:tools: h2load not found (apt-get install nghttp2-client)\n");
    process.exit(2);
  }
  installCleanup();
  const started = Date.now();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const problems: string[] = [];
  const settings = toolsSettings(TASK);
  const load = { start: loadavg() };
  const result = await toolsPhase({ ...settings, log, problems });
  const rows = toolTargetRows(result);
  console.log(`\n${toolTargetsTable(rows)}\n`);
  if (problems.length) console.log(`PROBLEMS:\n${problems.map((p) => `- ${p}`).join("\n")}`);
  const file = join(root, "bench/results/tools.json");
  writeJson(file, {
    date: new Date().toISOString(),
    node: process.version,
    cpus: { count: cpus().length, model: cpus()[0]?.model },
    loadavg: { ...load, end: loadavg() },
    settings,
    rows,
    problems,
    raw: result,
    wallSeconds: (Date.now() - started) / 1000,
  });
  log(`bench:tools: wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    process.stderr.write(`bench:tools failed: ${(err as Error).stack ?? String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);
