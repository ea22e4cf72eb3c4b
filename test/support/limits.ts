// How long the suite waits, in one place. These bound a wait that ends as soon as the
// thing is ready (a "listening" line, Redis's ready line, pg_ctl -w); they are not
// expectations of speed. Sized for a 2-core machine busy with other work, even two runs
// of this suite at once: a start-up that takes 5 s alone can take a minute there.

/** A server, Redis or PostgreSQL a test starts has this long to say it is ready. */
export const READY_WITHIN_MS = 120_000;

/** vitest's testTimeout: a test may start a server and then do its work. */
export const TEST_TIMEOUT_MS = 180_000;

/** vitest's hookTimeout: a beforeAll may start several servers, initdb a cluster, or stop them. */
export const HOOK_TIMEOUT_MS = 300_000;

/** The one line that says what to install when a tool the tests need is missing. */
export const INSTALL_LINE = "apt-get install redis-server postgresql python3-grpcio python3-protobuf protobuf-compiler curl jq";

/** vi.waitFor options for something that happens in the background (a warm-up, a write-behind): its default 1 s is a guess. */
export const EVENTUALLY = { timeout: 30_000, interval: 20 };
