import { defineConfig } from "vitest/config";
import { HOOK_TIMEOUT_MS, TEST_TIMEOUT_MS } from "./test/support/limits.ts";

// `npm run test:faults`: the fault and attack suite (test/faults). Kept out of `npm test`
// (see vitest.config.ts) because its load cases (1,000 streams, 1,000 connections, RSS
// measurements) would skew, and be skewed by, the other suites running beside them.
export default defineConfig({
  test: {
    include: ["test/faults/**/*.faults.test.ts"],
    // As in vitest.config.ts: the run's own Redis, PostgreSQL and temp folder, and the kill of what tests leave running.
    globalSetup: ["test/support/global-setup.ts"],
    setupFiles: ["test/support/worker-setup.ts"],
    testTimeout: TEST_TIMEOUT_MS,
    hookTimeout: HOOK_TIMEOUT_MS,
    // Each file starts its own server processes; two cores.
    maxWorkers: 2,
  },
});
