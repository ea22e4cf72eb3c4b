// setupFiles of both vitest configs: runs in every test file, before its own hooks; its
// after-hooks run after the file's own (vitest runs after-hooks in reverse order), so
// a file stops its servers its own way first and this kills what is left.
import { afterAll, afterEach, beforeEach } from "vitest";
import { killAll, testEnded, testStarted } from "./process-groups.ts";

beforeEach(() => testStarted());

// A test that timed out is still running (vitest cannot stop it): kill what it started so it cannot linger.
afterEach(({ task }) => testEnded(task.result?.state === "fail"));

afterAll(() => killAll());
