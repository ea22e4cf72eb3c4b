import { configDefaults, defineConfig } from "vitest/config";
import { HOOK_TIMEOUT_MS, TEST_TIMEOUT_MS } from "./test/support/limits.ts";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The fault and attack suite has its own run (npm run test:faults, vitest.faults.config.ts).
    exclude: [...configDefaults.exclude, "test/faults/**"],
    // The run's own Redis, PostgreSQL and temp folder (or REDIS_URL / DATABASE_URL), removed at the end.
    globalSetup: ["test/support/global-setup.ts"],
    // Kills what a failed or timed-out test, or a test file, left running.
    setupFiles: ["test/support/worker-setup.ts"],
    // Bounds on hangs, not expectations of speed (test/support/limits.ts).
    testTimeout: TEST_TIMEOUT_MS,
    hookTimeout: HOOK_TIMEOUT_MS,
    // e2e suites start server processes; two cores cannot run many at once.
    maxWorkers: 2,
  },
});
