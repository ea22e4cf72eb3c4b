// Work that must run however a test process ends: finished, failed, or torn down
// by vitest with a signal (whose default action would skip "exit" hooks).
// Kept on globalThis: vitest gives each test file its own copy of this module.
const KEY = Symbol.for("qingyu.test.onExit");

/** Runs `fn` (synchronously) when this test process exits, whatever ends it. */
export function onTestProcessExit(fn: () => void): void {
  const global = globalThis as Record<symbol, (() => void)[] | undefined>;
  let hooks = global[KEY];
  if (!hooks) {
    const list: (() => void)[] = [];
    global[KEY] = hooks = list;
    process.once("exit", () => {
      for (const hook of list) {
        try {
          hook();
        } catch {
          // One failed clean-up must not stop the others.
        }
      }
    });
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, () => process.exit(130));
  }
  hooks.push(fn);
}
