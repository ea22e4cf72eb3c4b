/** Asks the server at `address` (HOST:PORT, plaintext) for `service`'s health; `serving` is true for SERVING. */
export declare function checkHealth(address: string, service?: string, timeoutMs?: number): Promise<{ serving: boolean; status: string }>;

/** Where the command writes. */
interface Output {
  write(text: string): unknown;
}

/**
 * `qingyu health [--config FILE] [--address HOST:PORT]`: prints the status and
 * returns the exit status (0 SERVING, 1 otherwise or unreachable, 2 for bad arguments).
 */
export declare function runHealth(args: readonly string[], env: Readonly<Record<string, string | undefined>>, out?: Output, err?: Output): Promise<number>;
