// Where `qingyu health` and `qingyu reload` find the server: the config's
// server.host and server.port (PORT wins over the file, as it does for serve).
// Plain JavaScript (types in server-address.d.mts): the health probe reads it
// without loading TypeScript or the server.
import { readFileSync } from "node:fs";
import { extname } from "node:path";

/** A config that does not say where the server is; the CLI prints the message and exits 2. */
export class AddressError extends Error {
  constructor(message) {
    super(message);
    this.name = "AddressError";
  }
}

// Addresses that mean "every interface": a client on this machine reaches them on loopback.
const WILDCARD = new Set(["", "0.0.0.0", "::", "[::]"]);

/** The HOST:PORT to reach a server bound to `host` and `port` from this machine. */
export function localAddress(host, port) {
  if (WILDCARD.has(host)) return `127.0.0.1:${port}`;
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The address of the server `configFile` describes (none: the defaults,
 * 127.0.0.1:50051), with PORT from `env` winning over the file's port.
 */
export async function serverAddress(configFile, env) {
  let server = {};
  if (configFile) {
    let text;
    try {
      text = readFileSync(configFile, "utf8");
    } catch (err) {
      throw new AddressError(`cannot read config file ${configFile}: ${err.message}`);
    }
    // Imported only here: a probe without --config loads no YAML parser.
    const { parseConfigText } = await import("../config/interpolate.mjs");
    let config;
    try {
      config = parseConfigText(text, extname(configFile) === ".json" ? "json" : "yaml", env);
    } catch (err) {
      throw new AddressError(`config file ${configFile}: ${err.message}`);
    }
    if (config && typeof config === "object" && config.server && typeof config.server === "object") server = config.server;
  }
  const port = env.PORT ? Number(env.PORT) : (server.port ?? 50051);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AddressError(`${env.PORT ? `PORT (${JSON.stringify(env.PORT)})` : "server.port"} is not a port number: give --address HOST:PORT`);
  }
  if (port === 0) throw new AddressError("server.port is 0 (the server picks a free port at start): give --address HOST:PORT");
  return localAddress(typeof server.host === "string" ? server.host : "0.0.0.0", port);
}
