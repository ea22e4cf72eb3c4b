// Server memory per open, idle ExecuteStream: the "10,000 concurrent idle
// streams, < 40 KiB each" target of issue #6.
//
// Each server is started fresh for this phase with GC_FLAGS (a full GC on
// SIGUSR2), so neither carries the heap of the load phases. A client process
// (bench/idle-client.ts) connects, then opens the streams over several
// connections and waits until every one has received Started, so each is
// running on the server: ours with the default pipeline and an echo provider
// waiting out a 10-minute token delay (a provider waiting on its model), the
// bare grpc-js server in a handler that wrote Started and holds one timer.
// RSS (/proc/<pid>/status) is read after a forced GC has settled: connected with
// nothing open, then with every stream open; the difference over the count is
// the memory one idle stream costs. Read again after the client cancels them all,
// to show the memory comes back.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { GC_FLAGS, root, settledRssKiB, startBare, startOurs, stop, track, type ServerChild } from "./children.ts";

export interface IdleStreamsRun {
  server: string;
  streams: number;
  connections: number;
  /** RSS, KiB, connected with no call open. */
  baselineKiB: number;
  /** RSS, KiB, with every stream open. */
  openKiB: number;
  /** RSS, KiB, after the client cancelled them all. */
  afterCloseKiB: number;
  perStreamKiB: number;
  /** How long opening them all took (client side), s. */
  openSeconds: number;
}

/** Our server's config for this phase: `base` plus an idle agent, and room for the streams on few connections. */
export function idleConfig(base: Record<string, any>, maxConcurrentStreams: number): Record<string, unknown> {
  return {
    ...base,
    server: { ...base.server, limits: { ...base.server?.limits, maxConcurrentStreams } },
    providers: { ...base.providers, "echo-idle": { plugin: "echo", options: { tokenDelayMs: 600_000 } } },
    agents: [...base.agents, { id: "idle", provider: "echo-idle", model: "echo-1" }],
  };
}

/** Runs the client against one server and reads the server's RSS at each step. */
async function measure(server: ServerChild, streams: number, connections: number): Promise<IdleStreamsRun> {
  const script = join(root, "bench/idle-client.ts");
  // Heap to spare, so the client is never the limit.
  const args = ["--import", "tsx", "--max-old-space-size=4096", script, String(server.port), String(streams), String(connections)];
  const child = track(spawn(process.execPath, args, { cwd: root, stdio: ["pipe", "pipe", "pipe"] }));
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-4000)));
  const replies: Array<Record<string, any>> = [];
  let waiter: (() => void) | undefined;
  createInterface({ input: child.stdout! }).on("line", (line) => {
    replies.push(JSON.parse(line));
    waiter?.();
  });
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  const next = async (key: string, timeoutMs: number): Promise<Record<string, any>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = replies.shift();
      if (reply?.error) throw new Error(`${server.name}: idle client: ${reply.error}`);
      if (reply && key in reply) return reply;
      if (reply) continue;
      server.assertAlive();
      if (child.exitCode !== null) throw new Error(`${server.name}: idle client exited (${child.exitCode}) waiting for "${key}":\n${stderr}`);
      if (Date.now() > deadline) throw new Error(`${server.name}: idle client: no "${key}" within ${timeoutMs / 1000} s`);
      await new Promise<void>((r) => {
        waiter = r;
        setTimeout(r, 250);
      });
    }
  };
  try {
    await next("ready", 30_000);
    const baselineKiB = await settledRssKiB(server);
    child.stdin!.write("open\n");
    const opened = await next("open", 120_000);
    if (opened.open !== streams) throw new Error(`${server.name}: ${opened.open} streams open, expected ${streams}`);
    const openKiB = await settledRssKiB(server);
    child.stdin!.write("close\n");
    await next("closed", 30_000);
    await exited;
    await new Promise((r) => setTimeout(r, 500)); // the server sees the resets and ends the calls
    const afterCloseKiB = await settledRssKiB(server);
    return {
      server: server.name,
      streams,
      connections,
      baselineKiB,
      openKiB,
      afterCloseKiB,
      perStreamKiB: (openKiB - baselineKiB) / streams,
      openSeconds: opened.seconds,
    };
  } finally {
    await stop(child, 1000);
  }
}

/**
 * The phase: a fresh bare server and a fresh ours (`config`, see idleConfig),
 * measured one after the other and stopped after, so the phase's memory is gone
 * before the next. `log` gets one line per server.
 */
export async function idleStreamsPhase(config: unknown, streams: number, connections: number, log: (line: string) => void): Promise<IdleStreamsRun[]> {
  const servers = await Promise.all([startBare("bare-idle", GC_FLAGS), startOurs("ours-idle", config, {}, GC_FLAGS)]);
  try {
    const runs: IdleStreamsRun[] = [];
    for (const s of servers) {
      const r = await measure(s, streams, connections);
      s.assertAlive();
      runs.push(r);
      log(
        `  idle streams ${s.name.padEnd(10)} ${streams} open in ${r.openSeconds.toFixed(1)} s: RSS ${(r.baselineKiB / 1024).toFixed(0)} → ${(r.openKiB / 1024).toFixed(0)} MiB = ${r.perStreamKiB.toFixed(1)} KiB/stream (${(r.afterCloseKiB / 1024).toFixed(0)} MiB after close)`,
      );
    }
    return runs;
  } finally {
    await Promise.all(servers.map((s) => stop(s.child)));
  }
}
