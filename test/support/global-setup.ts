// globalSetup of both vitest configs (so of npm test, test:faults and test:e2e:deno). Once
// per run, in vitest's main process: checks the tools the tests need (one line naming the
// packages if one is missing), makes the run's folder, starts the run's own Redis and
// PostgreSQL there unless REDIS_URL / DATABASE_URL name ones to use, and hands all that to
// every worker through the environment. At the end (also on failure, Ctrl-C or SIGTERM)
// it stops them, kills every process group a worker left behind, and removes the folder.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { INSTALL_LINE } from "./limits.ts";
import { findPostgresBin, OwnPostgres, OwnRedis } from "./own-services.ts";
import { killRegisteredGroups, registeredClusters, RUN_DIR_VAR } from "./run-registry.ts";
import { DATABASE_URL_VAR, REDIS_URL_VAR } from "./services.ts";

/** What is missing of what the tests run: redis-server, PostgreSQL's server tools (unless DATABASE_URL), Debian's python3 with grpc, protoc, and the README's curl and jq (quickstart.e2e). */
function missingTools(): string[] {
  const runs = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
  const missing: string[] = [];
  if (!runs("redis-server", ["--version"])) missing.push("redis-server");
  if (!process.env.DATABASE_URL && !findPostgresBin()) missing.push("PostgreSQL (initdb, pg_ctl under /usr/lib/postgresql/*/bin)");
  if (!runs("/usr/bin/python3", ["-c", "import grpc, google.protobuf"])) missing.push("/usr/bin/python3 with grpc and protobuf");
  if (!runs("protoc", ["--version"])) missing.push("protoc");
  for (const tool of ["curl", "jq"]) if (!runs(tool, ["--version"])) missing.push(tool);
  return missing;
}

/** Ends the run at once with one line on stderr: no stack, no test runs into the same wall. */
function fail(line: string): never {
  process.stderr.write(`\nnpm test: ${line}\n`);
  process.exit(1);
}

/** A few tries: a port found free can be taken by another run before the server binds it. */
async function started<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt === 3) throw err;
    }
  }
}

/** SIGKILLs this process's children (vitest's workers, the run's Redis): a run that is aborted. */
function killChildren(): void {
  let pids: string[] = [];
  try {
    pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return; // no /proc: the registry's kill is all there is
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid) process.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
}

export default async function setup(): Promise<() => Promise<void>> {
  const missing = missingTools();
  if (missing.length > 0) fail(`${missing.join(", ")} not found; install the test prerequisites: ${INSTALL_LINE}`);

  // 0711: PostgreSQL runs as the `postgres` user and must reach its folder inside.
  const runDir = mkdtempSync(join(tmpdir(), "qingyu-test-"));
  const tmp = join(runDir, "tmp");
  mkdirSync(tmp);
  for (const dir of [runDir, tmp]) chmodSync(dir, 0o711);
  process.env[RUN_DIR_VAR] = runDir;
  // Every temp folder of the run (tests', servers', tsx's cache) is made in the run's folder and goes with it.
  process.env.TMPDIR = tmp;

  let done = false;
  // Synchronous, so that it also runs from an "exit" handler. Aborted (a signal, vitest exiting without its
  // teardown), the workers may still be at work: they go first, so nothing new starts or appears in the folder.
  const cleanUp = (aborted: boolean) => {
    if (done) return;
    done = true;
    if (aborted) killChildren();
    for (const { stop } of registeredClusters(runDir)) {
      try {
        execFileSync(stop[0]!, stop.slice(1), { stdio: "ignore", timeout: 60_000 });
      } catch {
        // Stopped already (or its folder is gone): the kill below covers the rest.
      }
    }
    killRegisteredGroups(runDir);
    // Retries: a process killed a moment ago may still be closing files it had open in the folder.
    try {
      rmSync(runDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    } catch (err) {
      process.stderr.write(`npm test: could not remove ${runDir}: ${(err as Error).message}\n`);
    }
  };
  process.once("exit", () => cleanUp(true));
  // Ctrl-C or a SIGTERM to the run: vitest exits without its teardown; the exit handler above still runs.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      cleanUp(true);
      process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
    });
  }

  // Named by the user: used as they are (and taken out of the environment, where a server a test starts would take them over its own config).
  let redisUrl = process.env.REDIS_URL;
  let databaseUrl = process.env.DATABASE_URL;
  delete process.env.REDIS_URL;
  delete process.env.DATABASE_URL;
  try {
    redisUrl ??= (await started(() => OwnRedis.create({ durable: false }))).url;
    databaseUrl ??= (await started(() => OwnPostgres.create({ durable: false }))).url;
  } catch (err) {
    cleanUp(true);
    fail(`could not start the run's ${redisUrl ? "PostgreSQL" : "Redis"}: ${(err as Error).message.split("\n")[0]}`);
  }
  process.env[REDIS_URL_VAR] = redisUrl;
  process.env[DATABASE_URL_VAR] = databaseUrl;

  return async () => cleanUp(false);
}
