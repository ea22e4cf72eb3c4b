// Starting, watching and always stopping the server processes under test.
// Every child goes into one registry so that a thrown error, Ctrl-C or a kill
// of the bench never leaves a server holding a port and a core.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const root = resolve(import.meta.dirname, "..");

/** A server process under test. */
export interface ServerChild {
  name: string;
  pid: number;
  port: number;
  child: ChildProcess;
  /** Last few KB of stderr, for reporting a crash. */
  stderrTail: () => string;
  /** Throws if the process has died (a crash under load must not read as a slow run). */
  assertAlive: () => void;
}

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** A fresh temp directory, removed when the bench exits however it exits. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "qingyu-bench-"));
  tempDirs.add(dir);
  return dir;
}

/** Registers a child so the exit hooks kill it; h2load runs go through here too. */
export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

function killAll(signal: NodeJS.Signals): void {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
}

let hooked = false;
/** Installs the exit hooks once: 'exit' can only act synchronously, so SIGKILL there. */
export function installCleanup(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    killAll("SIGKILL");
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping servers\n`);
      process.exit(130);
    });
  }
}

/** Stops every child politely, then forcibly after `graceMs`. */
export async function stopAll(graceMs = 3000): Promise<void> {
  const waits = [...live].map((child) => new Promise<void>((res) => child.once("exit", () => res())));
  killAll("SIGTERM");
  const timer = setTimeout(() => killAll("SIGKILL"), graceMs);
  await Promise.all(waits);
  clearTimeout(timer);
}

/** Stops one child (SIGTERM, SIGKILL after `graceMs`) and waits for it to exit. */
export async function stop(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * Runs a full GC in a server started with GC_FLAGS, then waits until its RSS
 * stops moving (two readings 250 ms apart within 0.5%, at most `maxMs`) and returns it in KiB.
 */
export async function settledRssKiB(server: ServerChild, maxMs = 5000): Promise<number> {
  server.assertAlive();
  process.kill(server.pid, "SIGUSR2");
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await sleep(500);
  const deadline = Date.now() + maxMs;
  let last = rssKiB(server.pid);
  for (;;) {
    await sleep(250);
    const now = rssKiB(server.pid);
    if (Math.abs(now - last) <= last * 0.005 || Date.now() > deadline) return now;
    last = now;
  }
}

function tailOf(child: ChildProcess, bytes = 8192): () => string {
  let tail = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => (tail = (tail + d).slice(-bytes)));
  return () => tail;
}

function watch(name: string, child: ChildProcess, port: number): ServerChild {
  const stderrTail = tailOf(child);
  return {
    name,
    pid: child.pid!,
    port,
    child,
    stderrTail,
    assertAlive() {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${name} server exited (${child.exitCode ?? child.signalCode}) during the bench:\n${stderrTail()}`);
      }
    },
  };
}

// Both servers run `node --import tsx` from the repo root, so they pay the same loader and flags.
function nodeArgs(script: string, args: string[] = [], flags: readonly string[] = []): string[] {
  return ["--import", "tsx", ...flags, join(root, script), ...args];
}

/** Node flags that let `collectGarbage` run a full GC in a server (bench/gc-preload.ts). */
export const GC_FLAGS: readonly string[] = ["--expose-gc", "--import", join(root, "bench/gc-preload.ts")];

/** Starts bench/bare-server.ts and waits for the port it prints. */
export async function startBare(name = "bare", flags: readonly string[] = []): Promise<ServerChild> {
  const child = track(spawn(process.execPath, nodeArgs("bench/bare-server.ts", [], flags), { cwd: root, stdio: ["ignore", "pipe", "pipe"] }));
  const server = watch(name, child, 0);
  const port = await new Promise<number>((res, rej) => {
    createInterface({ input: child.stdout! }).once("line", (line) => res(JSON.parse(line).grpcPort));
    child.once("exit", (code) => rej(new Error(`bare server exited (${code}) before listening:\n${server.stderrTail()}`)));
  });
  return { ...server, port };
}

/** A port nobody is bound to right now (the tiny race with other processes is acceptable here). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const probe = createServer();
    probe.once("error", rej);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => res(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), res(true)));
    socket.once("error", () => res(false));
  });
}

/**
 * Starts our server with `config` on ports we pick. Its stdout (one pino line
 * per call at info) goes to /dev/null so that nobody pays to read it, which is
 * why we poll the port instead of waiting for the "listening" line.
 */
export async function startOurs(name: string, config: unknown, env: Record<string, string> = {}, flags: readonly string[] = []): Promise<ServerChild> {
  // A port found free can be taken by another process before ours binds it: pick again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOursOnce(name, config, env, flags);
    } catch (err) {
      if (attempt >= 3 || !(err as Error).message.includes("EADDRINUSE")) throw err;
    }
  }
}

async function startOursOnce(name: string, config: unknown, env: Record<string, string>, flags: readonly string[]): Promise<ServerChild> {
  const file = join(tempDir(), "config.json");
  writeFileSync(file, JSON.stringify(config, null, 2));
  const [port, httpPort] = [await freePort(), await freePort()];
  const args = nodeArgs("src/main.ts", ["serve", "--config", file, "--port", String(port), "--http-port", String(httpPort)], flags);
  const child = track(spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] }));
  const server = watch(name, child, port);
  const deadline = Date.now() + 30_000;
  while (!(await canConnect(port))) {
    server.assertAlive();
    if (Date.now() > deadline) throw new Error(`${name} server did not listen within 30 s:\n${server.stderrTail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return server;
}

/** The HTTP port children.ts chose for the server, read back from its command line. */
export function httpPortOf(server: ServerChild): number {
  const args = server.child.spawnargs;
  const port = Number(args[args.indexOf("--http-port") + 1]);
  if (!port) throw new Error(`no --http-port in ${args.join(" ")}`);
  return port;
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User+system CPU of the whole process (all threads) so far, in µs, from /proc/<pid>/stat. */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which may itself contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15 of proc(5))
  return (ticks * 1e6) / CLK_TCK;
}

/** Resident set size in KiB, from /proc/<pid>/status. */
export function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) : NaN;
}
