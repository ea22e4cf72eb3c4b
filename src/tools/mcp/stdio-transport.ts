// Our own stdio Transport instead of the SDK's StdioClientTransport, which cannot be
// given the spawn behaviour we need: it spawns the server in our process group and
// kills only the server itself, so what the server started outlives it
// (typescript-sdk #2023); and it reports a closed connection on the child's "close"
// event, which waits for every holder of the server's stdout — a grandchild that
// inherited it keeps a dead server's calls waiting until they time out. This one
// starts the server as the leader of a process group of its own, kills the whole
// group, and reports the connection closed as soon as the server exits. Framing is
// the SDK's own (ReadBuffer, serializeMessage).
import { spawn, type ChildProcess } from "node:child_process";
import process from "node:process";
import { createInterface } from "node:readline";
import { ReadBuffer, SdkError, SdkErrorCode, serializeMessage, type JSONRPCMessage, type Transport } from "@modelcontextprotocol/client";
import { getDefaultEnvironment } from "@modelcontextprotocol/client/stdio";
import type { Logger } from "pino";

/** How long a server's process group has after SIGTERM before it gets SIGKILL. */
const KILL_GRACE_MS = 2000;

/** How long a closed server's stderr may take to deliver its last lines. */
const STDERR_DRAIN_MS = 250;

/** Lines of a server's stderr kept to explain an exit. */
const STDERR_TAIL_LINES = 20;

/** What to start, and where. */
export interface StdioServerParams {
  command: string;
  args: readonly string[];
  /** On top of the SDK's minimal inherited environment. */
  env: Readonly<Record<string, string>>;
  cwd: string;
}

/** A stdio MCP transport whose server runs (and dies) as a process group. */
export class ProcessGroupStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  #child: ChildProcess | undefined;
  #exited: Promise<void> | undefined;
  #exit: string | undefined;
  #stderrDone: Promise<void> | undefined;
  readonly #stderrTail: string[] = [];
  readonly #buffer = new ReadBuffer();
  // A runtime that exits without disposing (a crash, process.exit) still takes the servers' groups with it.
  readonly #onProcessExit = () => this.#signalGroup("SIGKILL");

  constructor(
    private readonly params: StdioServerParams,
    private readonly log: Logger,
  ) {}

  /** The server's pid (its process group id) once started. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** How the server ended ("exit code 3", "signal SIGKILL"), once it has. */
  get exitDescription(): string | undefined {
    return this.#exit;
  }

  /** The last lines the server wrote to stderr. */
  get stderrTail(): string {
    return this.#stderrTail.join("\n");
  }

  start(): Promise<void> {
    if (this.#child) throw new Error("the MCP stdio transport is started already");
    const child = spawn(this.params.command, [...this.params.args], {
      env: { ...getDefaultEnvironment(), ...this.params.env },
      cwd: this.params.cwd,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
      shell: false,
    });
    this.#child = child;
    // A command that cannot start reports "error" and never "exit".
    this.#exited = new Promise((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", () => resolve());
    });
    child.stdout!.on("data", (chunk: Buffer) => this.#onData(chunk));
    child.stdin!.on("error", (err) => this.onerror?.(err));
    const stderr = createInterface({ input: child.stderr! });
    this.#stderrDone = new Promise((resolve) => stderr.once("close", () => resolve()));
    stderr.on("line", (line) => {
      this.#stderrTail.push(line);
      if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
      this.log.debug({ stderr: line }, "MCP server stderr");
    });
    child.once("exit", (code, signal) => {
      this.#exit = signal ? `signal ${signal}` : `exit code ${code}`;
      process.off("exit", this.#onProcessExit);
      // What the server started goes with it.
      this.#signalGroup("SIGKILL");
      this.onclose?.();
    });
    return new Promise((resolve, reject) => {
      child.once("spawn", () => {
        process.on("exit", this.#onProcessExit);
        resolve();
      });
      child.once("error", (err) => {
        this.#exit = `not started: ${err.message}`;
        reject(err);
        this.onerror?.(err);
      });
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.#child?.stdin;
    if (!stdin || this.#exit !== undefined || stdin.destroyed) {
      return Promise.reject(new SdkError(SdkErrorCode.NotConnected, `the MCP server is not running${this.#exit ? ` (${this.#exit})` : ""}`));
    }
    return new Promise((resolve) => {
      if (stdin.write(serializeMessage(message))) resolve();
      else {
        stdin.once("drain", resolve);
        // A server that dies with its stdin full never drains it.
        stdin.once("close", resolve);
      }
    });
  }

  /** Ends the server's whole process group: SIGTERM, then SIGKILL after a short grace. */
  async close(): Promise<void> {
    const child = this.#child;
    if (!child || !this.#exited) return;
    if (this.#exit === undefined) {
      child.stdin?.end();
      this.#signalGroup("SIGTERM");
      const grace = new Promise<void>((resolve) => setTimeout(resolve, KILL_GRACE_MS).unref());
      await Promise.race([this.#exited, grace]);
    }
    // The leader may be gone while members that ignored SIGTERM are not; a group id is not reused while it has any.
    this.#signalGroup("SIGKILL");
    await this.#exited;
    // Its last stderr lines explain an exit; a grandchild still holding stderr open must not stall us here.
    await Promise.race([this.#stderrDone, new Promise<void>((resolve) => setTimeout(resolve, STDERR_DRAIN_MS).unref())]);
    child.stdout?.destroy();
    child.stderr?.destroy();
    this.#buffer.clear();
  }

  #onData(chunk: Buffer): void {
    try {
      this.#buffer.append(chunk);
    } catch (err) {
      // A message over the SDK's size limit: the stream cannot be resynchronised.
      this.onerror?.(err instanceof Error ? err : new Error(String(err)));
      void this.close();
      return;
    }
    for (;;) {
      try {
        const message = this.#buffer.readMessage();
        if (message === null) return;
        this.onmessage?.(message);
      } catch (err) {
        // A line that is no JSON-RPC message (a server printing to stdout) is skipped; the connection stays.
        this.onerror?.(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  #signalGroup(signal: NodeJS.Signals): void {
    const pid = this.#child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone already.
    }
  }
}
