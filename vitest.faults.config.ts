import { defineConfig } from "vitest/config";

// `npm run test:faults`: the fault and attack suite (test/faults). Kept out of `npm test`
// (see vitest.config.ts) because its load cases (1,000 streams, 1,000 connections, RSS
// measurements) would skew, and be skewed by, the other suites running beside them.
export default defineConfig({
  test: {
    include: ["test/faults/**/*.faults.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Each file starts its own server processes; two cores.
    maxWorkers: 2,
  },
});
