// What `qingyu --help`, `qingyu help COMMAND` and `qingyu COMMAND --help` print.
// The README's command table lists the same commands.

const COMMANDS = {
  serve: `qingyu serve [--config FILE] [--port N] [--http-port M] [--workers N|auto]
    Runs the server (the default command).
    --config FILE    YAML or JSON config; \${VAR} and \${VAR:-default} in its values are read from the
                     environment (default: built-in defaults, echo agent only)
    --port N         gRPC port (default server.port, 50051; env PORT)
    --http-port M    Connect / gRPC-Web port (default server.httpPort, 8080; env HTTP_PORT)
    --workers N|auto server processes sharing both ports, supervised by one more (default
                     server.workers, 1; auto: one per core). More than one needs shared stores
                     (sessions, events, runs) and Node.
    SIGHUP re-reads the config and plugins without dropping calls. Logs are JSON lines, or
    lines for a person when stdout is a terminal (LOG_FORMAT=json|pretty to choose).`,
  check: `qingyu check [--config FILE]
    Loads the config, reads the TLS files, imports every plugin and validates every entry's
    options as serve would, without opening a port or a connection; exit status 2 with serve's
    messages. Agents that are unavailable (an environment variable they require is not set) are warnings.`,
  plugins: `qingyu plugins [--config FILE]
    Lists the plugins discovered (kind, status, source), the pipeline order, the event handlers
    and the agents; problems serve would stop at go to stderr (exit status 2).`,
  reload: `qingyu reload [--config FILE] [--address HOST:PORT] [--token TOKEN]
    Asks a running server to reload (AdminService.Reload). The address is the config's
    server.host and server.port (env PORT wins; 127.0.0.1:50051 without a config); the token
    comes from --token or QINGYU_TOKEN (needed when auth is configured: an admin's key or JWT).`,
  health: `qingyu health [--config FILE] [--address HOST:PORT]
    Exits 0 when the server's gRPC health check says SERVING, 1 otherwise or when it does not
    answer within 3 s (for container health checks). The address defaults as for reload.`,
  "hash-key": `qingyu hash-key [KEY]
    Prints the SHA-256 to put in auth.apiKeys[].sha256 (reads KEY from stdin when not given).`,
  help: `qingyu help [COMMAND]   (or qingyu --help, qingyu COMMAND --help)
    Prints this text, or one command's.`,
  version: `qingyu version   (or qingyu --version, -v)
    Prints the version.`,
} as const;

/** A command the CLI knows. */
export type CommandName = keyof typeof COMMANDS;

/** Whether `name` is a command the CLI knows. */
export function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMANDS, name);
}

/** Every command, in the order --help lists them. */
export function commandNames(): CommandName[] {
  return Object.keys(COMMANDS) as CommandName[];
}

/** One command's usage, or every command's. */
export function usage(command?: CommandName): string {
  if (command) return `usage:\n  ${COMMANDS[command].replaceAll("\n", "\n  ")}\n`;
  const all = Object.values(COMMANDS)
    .map((text) => `  ${text.replaceAll("\n", "\n  ")}`)
    .join("\n");
  return `usage:\n${all}\n`;
}
