// The Redis and PostgreSQL every test uses: the run's own (test/support/global-setup.ts
// starts them), or the ones REDIS_URL / DATABASE_URL named when the run began.

/** Set by global-setup.ts for every worker (and what they spawn). */
export const REDIS_URL_VAR = "QINGYU_TEST_REDIS_URL";
export const DATABASE_URL_VAR = "QINGYU_TEST_DATABASE_URL";

function named(variable: string): string {
  const url = process.env[variable];
  if (!url)
    throw new Error(`${variable} is not set: run the tests with npm test (or vitest with vitest.config.ts), whose globalSetup starts Redis and PostgreSQL`);
  return url;
}

/** The run's Redis, e.g. redis://127.0.0.1:40123. */
export function redisUrl(): string {
  return named(REDIS_URL_VAR);
}

/** The run's PostgreSQL database `test`, e.g. postgres://postgres@127.0.0.1:40124/test. */
export function databaseUrl(): string {
  return named(DATABASE_URL_VAR);
}

/** Where a URL's server listens (for proxies in front of it). */
export function addressOf(url: string): { host: string; port: number } {
  const { hostname, port, protocol } = new URL(url);
  return { host: hostname, port: Number(port || (protocol === "redis:" ? 6379 : 5432)) };
}

/** `url` with its host and port replaced by a proxy's on 127.0.0.1 (user, password and database kept). */
export function throughPort(url: string, port: number): string {
  const through = new URL(url);
  through.hostname = "127.0.0.1";
  through.port = String(port);
  return through.toString();
}
