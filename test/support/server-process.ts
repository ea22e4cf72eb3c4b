import type { ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { READY_WITHIN_MS } from "./limits.ts";
import { signalGroup, spawnTracked } from "./process-groups.ts";
import { tempDir } from "./temp-dirs.ts";

export { killAll, spawnTracked } from "./process-groups.ts";

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
      ["run", "--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", "--allow-run", join(root, "src/main.ts"), ...args],
    ];
  }
  return [process.execPath, [join(root, "bin/qingyu.mjs"), ...args]];
}

/** Where the process runs (default: the repository). */
export interface SpawnPlace {
  cwd?: string;
}

/**
 * Writes `config` to a temp file for `qingyu serve`. A config that names no
 * server.host gets 127.0.0.1: a test's server is never reachable from other machines.
 */
export function writeConfig(config: unknown): string {
  // Removed when the test process exits: a server reads its config again on reload.
  const dir = tempDir("qingyu-e2e-");
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify(onLoopback(config), null, 2));
  return file;
}

/** `config` with server.host 127.0.0.1 unless it names a host (or is no mapping: a test of bad configs). */
function onLoopback(config: unknown): unknown {
  if (config === null || typeof config !== "object" || Array.isArray(config)) return config;
  const server = (config as { server?: unknown }).server;
  if (server !== undefined && (server === null || typeof server !== "object" || Array.isArray(server))) return config;
  return { ...config, server: { host: "127.0.0.1", ...(server as object | undefined) } };
}

/** What a process printed and how it ended. */
export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `cmd` to completion in a process group of its own (killed with the test if the test fails or times out). */
export function runProcess(cmd: string, args: string[], env: Record<string, string | undefined> = {}, place: SpawnPlace = {}): Promise<Finished> {
  return new Promise((resolvePromise, reject) => {
    const child = spawnTracked(cmd, args, { cwd: place.cwd ?? root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.on("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Runs the CLI to completion (for start-up failures). */
export function runCli(args: string[], env: Record<string, string> = {}, place: SpawnPlace = {}): Promise<Finished> {
  const [cmd, argv] = command(args);
  return runProcess(cmd, argv, env, place);
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
    // Only a bound on a hang: start-up ends with the "listening" line, however long a loaded machine takes to get there.
    setTimeout(() => rej(new Error(`server did not say "listening" within ${READY_WITHIN_MS / 1000} s:\n${stderr}`)), READY_WITHIN_MS).unref();
  });
  // A server that never announced itself (or listens beyond loopback) must not outlive the test.
  const ports = await listening.then(assertLoopback).catch((err: unknown) => {
    signalGroup(child.pid, "SIGKILL");
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

/**
 * Throws if a port the server announced listens on another address than loopback
 * (0.0.0.0 or ::): a config a test wrote without `server.host: 127.0.0.1`.
 * From /proc/net/tcp{,6}, the listening sockets of this network namespace.
 */
function assertLoopback<T extends { grpcPort: number; httpPort: number }>(ports: T): T {
  for (const port of [ports.grpcPort, ports.httpPort]) {
    if (!port) continue;
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      let text = "";
      try {
        text = readFileSync(table, "utf8");
      } catch {
        continue; // no /proc: nothing to check with
      }
      for (const line of text.split("\n").slice(1)) {
        const [, local, , state] = line.trim().split(/\s+/);
        if (state !== "0A" || !local) continue; // 0A: LISTEN
        const [address, hexPort] = local.split(":");
        if (parseInt(hexPort!, 16) !== port) continue;
        if (!/^(0100007F|0000000000000000FFFF00000100007F|00000000000000000000000001000000)$/.test(address!)) {
          throw new Error(`the server listens on port ${port} beyond loopback (${table}: ${address}): give its config server.host 127.0.0.1`);
        }
      }
    }
  }
  return ports;
}
