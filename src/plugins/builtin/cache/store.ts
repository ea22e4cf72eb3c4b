/**
 * Where cached runs live. Values are opaque serialized entries; a backend only
 * keeps them for `ttlMs` and hands them back. Implementations never throw from
 * `get`/`set` for a backend outage: the cache must not fail a call.
 */
export interface CacheStore {
  /** The entry stored under `key`, or undefined when absent, expired or unreadable. */
  get(key: string): Promise<string | undefined>;
  /** Stores `value` under `key` for `ttlMs`; a failure is logged and swallowed. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Releases what the backend holds. */
  dispose?(): void | Promise<void>;
}
