// Throwaway Redis and PostgreSQL servers a test owns: it may SIGKILL, freeze or
// crash-restart them without touching the machine's shared instances (other suites use those).
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

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
    const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server on ${this.port} did not start within 10 s`)), 10_000);
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
      // No redis-server installed: fail loudly rather than skip (CI has it).
      child.once("error", reject);
    });
  }

  /** An abrupt death (no goodbye to clients); resolves once the process is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGCONT");
    child.kill("SIGKILL");
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

/** The newest PostgreSQL server binaries installed (Debian layout), found rather than assumed. */
function postgresBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "pg_ctl"))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries under ${root}/*/bin`);
  return join(root, versions[0]!, "bin");
}

/**
 * A private PostgreSQL cluster in a temp folder, on its own port, run as the `postgres`
 * user (initdb refuses root). Database `test`, user `postgres`, trust auth on loopback.
 */
export class OwnPostgres {
  private up = false;
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly bin: string,
  ) {}

  static async create(): Promise<OwnPostgres> {
    const bin = postgresBin();
    const dir = mkdtempSync(join(tmpdir(), "qingyu-faults-pg-"));
    const pg = new OwnPostgres(await freePort(), dir, bin);
    try {
      chownSync(dir, idOf("postgres", "-u"), idOf("postgres", "-g"));
      chmodSync(dir, 0o700);
      // -N: no fsync during initdb (seconds saved; the cluster is thrown away after the run).
      await pg.as("initdb", ["-D", pg.data, "-A", "trust", "-U", "postgres", "-N", "--no-instructions"]);
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

  private async as(tool: string, args: string[]): Promise<string> {
    const { stdout } = await run("runuser", ["-u", "postgres", "--", join(this.bin, tool), ...args], { timeout: 30_000 });
    return stdout;
  }

  async start(): Promise<void> {
    const options = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1`;
    await this.as("pg_ctl", ["-D", this.data, "-l", join(this.dir, "log"), "-o", options, "-w", "-t", "30", "start"]);
    this.up = true;
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
