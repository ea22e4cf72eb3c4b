import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The fault and attack suite has its own run (npm run test:faults, vitest.faults.config.ts).
    exclude: [...configDefaults.exclude, "test/faults/**"],
    testTimeout: 20_000,
    hookTimeout: 60_000,
    // e2e suites start server processes; two cores cannot run many at once.
    maxWorkers: 2,
  },
});
