// `npm run bench:runs`: the runs phase of `npm run bench` alone (issue #17's
// speed rows, bench/runs-phase.ts), about 40 s. Needs the machine's PostgreSQL
// (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test); the phase
// makes a schema of its own and drops it. BENCH_RUNS_ROUNDS (default 100)
// StartRun/ExecuteStream pairs, BENCH_RUNS_REPLAYS (30) journal replays,
// BENCH_RUNS_REPEATS (9) watches per source; BENCH_RUNS_CPU_PROF=<dir>
// profiles the owner server. Writes bench/results/runs.json.
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { installCleanup, root, stopAll } from "./children.ts";
import { writeJson } from "./report.ts";
import { runsPhase, runsSettings, runTargetRows, runTargetsTable } from "./runs-phase.ts";

const TASK = "summarise the quarterly report for the board in three short sentences";

async function main(): Promise<void> {
  installCleanup();
  const started = Date.now();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const problems: string[] = [];
  const settings = runsSettings(TASK);
  const load = { start: loadavg() };
  const result = await runsPhase({ ...settings, log, problems });
  const rows = runTargetRows(result);
  console.log(`\n${runTargetsTable(rows)}\n`);
  console.log(
    `load average at start ${load.start.map((x) => x.toFixed(2)).join(" ")}, at end ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")} (${cpus().length} cpus)`,
  );
  if (problems.length) console.log(`PROBLEMS:\n${problems.map((p) => `- ${p}`).join("\n")}`);
  const file = join(root, "bench/results/runs.json");
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
  log(`bench:runs: wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    process.stderr.write(`bench:runs failed: ${(err as Error).stack ?? String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);
