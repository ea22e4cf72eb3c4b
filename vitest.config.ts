import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 20_000,
    hookTimeout: 60_000,
    // e2e suites start server processes; two cores cannot run many at once.
    maxWorkers: 2,
  },
});
