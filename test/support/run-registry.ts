// What a test run started, written down in the run's folder (global-setup.ts makes it) as
// it starts: the run's teardown ends whatever is still there, also what a worker that
// died (SIGKILLed, crashed, torn down by vitest) could not stop itself.
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The run's folder, set by global-setup.ts for every worker and what they spawn. */
export const RUN_DIR_VAR = "QINGYU_TEST_RUN_DIR";

const GROUPS = "process-groups";
const CLUSTERS = "postgres-clusters";

/**
 * When a process started (clock ticks since boot, /proc/PID/stat field 22): with its pid
 * it names one process for good, so a pid the system gave to someone else later is not
 * mistaken for ours. Undefined when the process is gone (or there is no /proc).
 */
function startedAt(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function append(file: string, line: string): void {
  const dir = process.env[RUN_DIR_VAR];
  // Outside a run (a test file run by hand without the globalSetup) nobody sweeps: nothing to record.
  if (dir && existsSync(dir)) appendFileSync(join(dir, file), `${line}\n`);
}

function lines(runDir: string, file: string): string[] {
  const path = join(runDir, file);
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : [];
}

/** Records a process group (its leader's pid) that the run's teardown kills if it is still there. */
export function registerGroup(pgid: number): void {
  append(GROUPS, `${pgid} ${startedAt(pgid) ?? "-"}`);
}

/** Records a PostgreSQL cluster (data directory, and the tool that stops it) that the run's teardown stops if it still runs. */
export function registerCluster(data: string, stop: string[]): void {
  append(CLUSTERS, JSON.stringify({ data, stop }));
}

/** The clusters recorded in the run, each with the command that stops it at once. */
export function registeredClusters(runDir: string): { data: string; stop: string[] }[] {
  return lines(runDir, CLUSTERS).map((line) => JSON.parse(line) as { data: string; stop: string[] });
}

/**
 * SIGKILLs every recorded process group that is still there. A group whose leader is gone
 * may still have members, and a group id is not reused while it has any: those are ours.
 * A leader that started at another time is someone else's process with a recycled pid.
 */
export function killRegisteredGroups(runDir: string): void {
  for (const line of lines(runDir, GROUPS)) {
    const [pid, started] = line.split(" ");
    const pgid = Number(pid);
    if (!Number.isInteger(pgid) || pgid <= 1) continue;
    const now = startedAt(pgid);
    if (now !== undefined && now !== started) continue;
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
}
