/** A config that does not say where the server is; the CLI prints the message and exits 2. */
export declare class AddressError extends Error {}

/** The HOST:PORT to reach a server bound to `host` and `port` from this machine. */
export declare function localAddress(host: string, port: number): string;

/**
 * The address of the server `configFile` describes (none: the defaults,
 * 127.0.0.1:50051), with PORT from `env` winning over the file's port.
 */
export declare function serverAddress(configFile: string | undefined, env: Readonly<Record<string, string | undefined>>): Promise<string>;
