import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { onTestProcessExit } from "./on-exit.ts";
import { tempDir } from "./temp-dirs.ts";

const root = resolve(import.meta.dirname, "../..");

/** Which runtime the e2e suites start the server under (QINGYU_E2E_RUNTIME=deno for Deno). */
export const runtime = process.env.QINGYU_E2E_RUNTIME === "deno" ? "deno" : "node";

/** A server process started by a test. */
export interface ServerProcess {
  grpcPort: number;
  httpPort: number;
  child: ChildProcess;
  /** Every stdout line so far (JSON logs). */
  lines: string[];
  stderr: () => string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  /** SIGTERM (or the given signal) and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

// Node: the way users start it (the package's bin, which registers tsx); Deno: `npm run start:deno`'s command.
function command(args: string[]): [string, string[]] {
  if (runtime === "deno") {
    return [
      join(root, "node_modules/.bin/deno"),
      ["run", "--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", join(root, "src/main.ts"), ...args],
    ];
  }
  return [process.execPath, [join(root, "bin/qingyu.mjs"), ...args]];
}

// Every process started here that has not been swept yet, across the test files this process runs.
const LIVE = Symbol.for("qingyu.e2e.liveProcesses");
const live: Set<ChildProcess> = ((globalThis as Record<symbol, unknown>)[LIVE] as Set<ChildProcess> | undefined) ?? installSweep();

function installSweep(): Set<ChildProcess> {
  const set = new Set<ChildProcess>();
  (globalThis as Record<symbol, unknown>)[LIVE] = set;
  // A test process that ends, however it ends, takes its servers (and what they started) with it.
  onTestProcessExit(killAll);
  return set;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is gone already.
  }
}

/**
 * Starts a process in a process group of its own and tracks it until it has
 * exited; then whatever it started and left behind is killed with it.
 * killAll() (afterAll) ends every group still there.
 */
export function spawnTracked(cmd: string, args: string[], options: SpawnOptions): ChildProcess {
  const child = spawn(cmd, args, { ...options, detached: true });
  live.add(child);
  child.once("exit", () => {
    signalGroup(child, "SIGKILL");
    live.delete(child);
  });
  return child;
}

/** SIGKILLs every process group started by this test process that is still there (afterAll: a test that timed out left its server running). */
export function killAll(): void {
  for (const child of live) signalGroup(child, "SIGKILL");
}

/** Where the process runs (default: the repository). */
export interface SpawnPlace {
  cwd?: string;
}

/** Writes `config` to a temp file and runs `qingyu serve` on free ports. */
export function writeConfig(config: unknown): string {
  // Removed when the test process exits: a server reads its config again on reload.
  const dir = tempDir("qingyu-e2e-");
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/** Runs the CLI to completion (for start-up failures). */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  place: SpawnPlace = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, argv] = command(args);
  return new Promise((resolvePromise) => {
    const child = spawnTracked(cmd, argv, { cwd: place.cwd ?? root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Starts the real server with `config` on free ports and waits for its "listening" line. */
export function startServer(config: unknown, env: Record<string, string> = {}): Promise<ServerProcess> {
  return serveFile(writeConfig(config), ["--port", "0", "--http-port", "0"], env);
}

/**
 * `qingyu serve --config file ...args`, resolved once the "listening" line is
 * out: for tests that own the config file (rewrite it for a reload, or need
 * its folder to be where npm packages resolve from).
 */
export async function serveFile(file: string, args: string[] = [], env: Record<string, string> = {}, place: SpawnPlace = {}): Promise<ServerProcess> {
  const [cmd, argv] = command(["serve", "--config", file, ...args]);
  const child = spawnTracked(cmd, argv, { cwd: place.cwd ?? root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<number | string>((res) => child.on("exit", (code, signal) => res(code ?? signal ?? -1)));
  const listening = new Promise<{ grpcPort: number; httpPort: number }>((res, rej) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      lines.push(line);
      try {
        const entry = JSON.parse(line);
        if (entry.msg === "listening") res({ grpcPort: entry.grpcPort, httpPort: entry.httpPort });
      } catch {
        // not a log line
      }
    });
    void exited.then((code) => rej(new Error(`server exited (${code}) before listening:\n${stderr}`)));
    setTimeout(() => rej(new Error(`server did not start within 30 s:\n${stderr}`)), 30_000).unref();
  });
  // A server that never announced itself must not outlive the test run.
  const ports = await listening.catch((err: unknown) => {
    child.kill("SIGKILL");
    throw err;
  });
  return {
    ...ports,
    child,
    lines,
    stderr: () => stderr,
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
