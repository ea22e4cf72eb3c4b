// Every process a test starts runs in a process group of its own and is killed as a group:
// when it exits (what it started goes with it), when the test that started it fails or
// times out, after its test file, when the worker exits, and (run-registry.ts) at the end
// of the run if the worker died before it could.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { onTestProcessExit } from "./on-exit.ts";
import { registerGroup } from "./run-registry.ts";

interface Tracking {
  /** Started by this test process and not yet seen to exit. */
  live: Set<ChildProcess>;
  /** Started while the current test (with its beforeEach hooks) ran; undefined between tests. */
  test: Set<ChildProcess> | undefined;
}

// Kept on globalThis: vitest gives each test file its own copy of this module.
const KEY = Symbol.for("qingyu.test.processGroups");

function tracking(): Tracking {
  const global = globalThis as Record<symbol, Tracking | undefined>;
  let state = global[KEY];
  if (!state) {
    const made: Tracking = { live: new Set(), test: undefined };
    global[KEY] = state = made;
    // A test process that ends, however it ends, takes its servers (and what they started) with it.
    onTestProcessExit(() => {
      for (const child of made.live) signalGroup(child.pid, "SIGKILL");
    });
  }
  return state;
}

/** Sends `signal` to the process group led by `pid`; a group that is gone is no error. */
export function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

/**
 * Starts a process in a process group of its own and tracks it until it has
 * exited; then whatever it started and left behind is killed with it.
 */
export function spawnTracked(cmd: string, args: string[], options: SpawnOptions): ChildProcess {
  const child = spawn(cmd, args, { ...options, detached: true });
  const { live, test } = tracking();
  if (child.pid !== undefined) registerGroup(child.pid);
  live.add(child);
  test?.add(child);
  child.once("exit", () => {
    signalGroup(child.pid, "SIGKILL");
    live.delete(child);
  });
  // A command that cannot start (ENOENT) reports through "error" and never exits.
  child.once("error", () => live.delete(child));
  return child;
}

/** SIGKILLs every process group started by this test process that is still there (a test that timed out left its server running). */
export function killAll(): void {
  for (const child of tracking().live) signalGroup(child.pid, "SIGKILL");
}

/** From now until testEnded(), what spawnTracked starts belongs to the current test. */
export function testStarted(): void {
  tracking().test = new Set();
}

/** The test is over: if it failed (a timeout too), what it started and did not stop is killed now, not after the file. */
export function testEnded(failed: boolean): void {
  const state = tracking();
  if (failed) for (const child of state.test ?? []) signalGroup(child.pid, "SIGKILL");
  state.test = undefined;
}
