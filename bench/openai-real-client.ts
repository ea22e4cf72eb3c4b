// Starting and commanding bench/light-client.ts from bench/openai-real.ts.
import { fork, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { root, stop, track } from "./children.ts";
import type { AlternateCommand, AlternateResult, LoopCommand, LoopResult } from "./light-client.ts";

type Reply = { id: number; result?: unknown; error?: string };

/** The light client's process: one command at a time, answered over IPC. */
export class LightClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(readonly child: ChildProcess) {
    child.on("message", (m: Reply) => {
      const waiter = this.pending.get(m.id);
      if (!waiter) return;
      this.pending.delete(m.id);
      if (m.error) waiter.reject(new Error(`light client: ${m.error}`));
      else waiter.resolve(m.result);
    });
    child.once("exit", (code, signal) => {
      for (const w of this.pending.values()) w.reject(new Error(`light client exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(): Promise<LightClient> {
    const child = track(
      fork(join(root, "bench/light-client.ts"), [], { cwd: root, execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] }),
    );
    await new Promise<void>((res, rej) => {
      child.once("message", () => res());
      child.once("exit", (code) => rej(new Error(`light client exited (${code}) before it was ready`)));
    });
    return new LightClient(child);
  }

  private send<T>(command: Omit<LoopCommand, "id"> | Omit<AlternateCommand, "id">): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ ...command, id });
    });
  }

  loop(command: Omit<LoopCommand, "id" | "type">): Promise<LoopResult> {
    return this.send({ ...command, type: "loop" });
  }

  alternate(command: Omit<AlternateCommand, "id" | "type">): Promise<AlternateResult> {
    return this.send({ ...command, type: "alternate" });
  }

  async close(): Promise<void> {
    if (this.child.connected) this.child.send({ type: "exit" });
    await stop(this.child);
  }
}
