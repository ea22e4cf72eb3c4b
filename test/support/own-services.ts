// Throwaway Redis and PostgreSQL servers: the run's own (global-setup.ts), and those a test
// owns, which it may SIGKILL, freeze or crash-restart without touching the run's shared ones.
// Each runs in a process group of its own, recorded for the run's teardown (run-registry.ts).
import { execFile, execFileSync, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { INSTALL_LINE, READY_WITHIN_MS } from "./limits.ts";
import { signalGroup, spawnTracked } from "./process-groups.ts";
import { registerCluster, registerGroup } from "./run-registry.ts";

const run = promisify(execFile);

/** A TCP port nobody listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/**
 * A redis-server of the test's own on a fixed port and data folder, so a case can kill,
 * freeze and restart it. Durable (the default), it fsyncs its append-only file before
 * every reply (`appendfsync always`): what it acknowledged survives a SIGKILL, as in a
 * deployment that relies on Redis for durability. Without that a killed Redis comes back
 * empty, and "no acknowledged write lost" would test Redis's configuration instead of the
 * server. Not durable, it persists nothing and every restart is empty.
 */
export class OwnRedis {
  private child: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly durable: boolean,
  ) {}

  static async create(options: { durable?: boolean } = {}): Promise<OwnRedis> {
    const redis = new OwnRedis(await freePort(), mkdtempSync(join(tmpdir(), "qingyu-own-redis-")), options.durable ?? true);
    await redis.start();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts it (again) on the same port and folder: durable, it reloads its append-only file; else it starts empty. */
  async start(): Promise<void> {
    const persistence = this.durable ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"];
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", "", ...persistence];
    const child = spawnTracked("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        signalGroup(child.pid, "SIGKILL");
        reject(new Error(`redis-server on ${this.port} did not say it was ready within ${READY_WITHIN_MS / 1000} s`));
      }, READY_WITHIN_MS);
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (line.includes("Ready to accept connections")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr!.resume();
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server on ${this.port} exited (${code})`));
      });
      // No redis-server installed: fail loudly rather than skip, naming the package.
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot run redis-server (${err.message}): ${INSTALL_LINE}`));
      });
    });
  }

  /** An abrupt death (no goodbye to clients); resolves once the process is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    signalGroup(child.pid, "SIGCONT");
    signalGroup(child.pid, "SIGKILL");
    await exited;
  }

  /** Frozen, not dead: connections stay open, commands go unanswered, the data stays. */
  freeze(): void {
    this.child?.kill("SIGSTOP");
  }

  thaw(): void {
    this.child?.kill("SIGCONT");
  }

  /** Killed if running, and its folder removed. */
  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The newest PostgreSQL server binaries installed (Debian layout), found rather than assumed; undefined if none. */
export function findPostgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "pg_ctl")) && existsSync(join(root, v, "bin", "initdb")))
    : [];
  versions.sort((a, b) => Number(b) - Number(a));
  return versions.length === 0 ? undefined : join(root, versions[0]!, "bin");
}

function postgresBin(): string {
  const bin = findPostgresBin();
  if (!bin) throw new Error(`no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin: ${INSTALL_LINE}`);
  return bin;
}

// initdb refuses to run as root: as root, the PostgreSQL tools run as the `postgres` user (Debian's package makes it).
const asRoot = process.getuid?.() === 0;

/**
 * A private PostgreSQL cluster in a temp folder, on its own port, run as the `postgres`
 * user when we are root (initdb refuses root). Database `test`, user `postgres`, trust
 * auth on loopback. Durable (the default), it fsyncs as a deployment does, so a crash
 * test tests the server; not durable, it never waits for the disk (the run's shared
 * cluster: nothing there has to survive a machine crash).
 */
export class OwnPostgres {
  private up = false;
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly bin: string,
    private readonly durable: boolean,
  ) {}

  static async create(options: { durable?: boolean } = {}): Promise<OwnPostgres> {
    const bin = postgresBin();
    const dir = mkdtempSync(join(tmpdir(), "qingyu-own-pg-"));
    const pg = new OwnPostgres(await freePort(), dir, bin, options.durable ?? true);
    try {
      if (asRoot) chownSync(dir, idOf("postgres", "-u"), idOf("postgres", "-g"));
      chmodSync(dir, 0o700);
      // -N: no fsync during initdb (seconds saved; the cluster is thrown away after the run). Locale C: the same on every machine.
      await pg.as("initdb", ["-D", pg.data, "-A", "trust", "-U", "postgres", "-N", "--no-instructions", "-E", "UTF8", "--locale=C"]);
      registerCluster(pg.data, pg.command("pg_ctl", ["-D", pg.data, "-m", "immediate", "-w", "stop"]));
      await pg.start();
      await pg.as("psql", ["-h", dir, "-p", String(pg.port), "-U", "postgres", "-d", "postgres", "-qAt", "-c", "create database test"]);
    } catch (err) {
      await pg.destroy();
      throw err;
    }
    return pg;
  }

  private get data(): string {
    return join(this.dir, "data");
  }

  /** Whether it was started and not crashed since. */
  get running(): boolean {
    return this.up;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/test`;
  }

  /** The command line that runs a PostgreSQL tool (as `postgres` when we are root). */
  private command(tool: string, args: string[]): string[] {
    const path = join(this.bin, tool);
    return asRoot ? ["runuser", "-u", "postgres", "--", path, ...args] : [path, ...args];
  }

  private async as(tool: string, args: string[]): Promise<string> {
    const [cmd, ...argv] = this.command(tool, args);
    // The tools wait for the server themselves (pg_ctl -w): this only bounds a hang.
    const { stdout } = await run(cmd!, argv, { timeout: READY_WITHIN_MS + 10_000, cwd: this.dir });
    return stdout;
  }

  async start(): Promise<void> {
    const speed = this.durable ? "" : " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
    const options = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1${speed}`;
    await this.as("pg_ctl", ["-D", this.data, "-l", join(this.dir, "log"), "-o", options, "-w", "-t", String(READY_WITHIN_MS / 1000), "start"]);
    this.up = true;
    // pg_ctl starts the postmaster in a session (so a process group) of its own; its backends are in it.
    const postmaster = Number(readFileSync(join(this.data, "postmaster.pid"), "utf8").split("\n")[0]);
    if (postmaster > 1) registerGroup(postmaster);
  }

  /** `pg_ctl -m immediate stop`: every backend killed without a checkpoint; the next start runs crash recovery. */
  async crash(): Promise<void> {
    this.up = false;
    await this.as("pg_ctl", ["-D", this.data, "-m", "immediate", "-w", "stop"]);
  }

  /** Stopped if running, and its folder removed; never throws (afterAll must go on). */
  async destroy(): Promise<void> {
    if (this.up || existsSync(join(this.data, "postmaster.pid"))) {
      this.up = false;
      await this.as("pg_ctl", ["-D", this.data, "-m", "immediate", "-w", "stop"]).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A user's numeric id (`-u`) or group id (`-g`), from `id`. */
function idOf(user: string, flag: "-u" | "-g"): number {
  return Number(execFileSync("id", [flag, user], { encoding: "utf8" }).trim());
}
