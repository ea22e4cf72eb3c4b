import { z } from "zod";

// host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
const ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/;

// What grpc-js accepts as an ASCII header it may set: not its own grpc-*, not a binary *-bin.
const HEADER = /^(?!grpc-)(?!.*-bin$)[0-9A-Za-z_.-]+$/i;

/** PEM files (paths relative to the config file's folder) for a backend's TLS. */
const TlsFilesSchema = z
  .strictObject({
    /** CA certificates that sign the backend's certificate; default: the system roots. */
    ca: z.string().min(1).optional(),
    /** Client certificate and key, for a backend that asks for mutual TLS. */
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    /** The name the backend's certificate is checked against, when it is not the address's host. */
    serverName: z.string().min(1).optional(),
  })
  .refine((tls) => (tls.cert === undefined) === (tls.key === undefined), { message: "cert and key go together", path: ["key"] });

/** One backend's ToolService: config `tools.backends.<name>`. */
export const BackendToolsSchema = z.strictObject({
  /** host:port of the backend's gRPC server. */
  address: z.string().regex(ADDRESS, 'must be "host:port"'),
  /** Off (default): plaintext. true: TLS with the system roots. An object: TLS with these PEM files. */
  tls: z.union([z.boolean(), TlsFilesSchema]).default(false),
  /** Which of the backend's tools (its own names, before namespacing) agents may be given; globs with * and ?. Default: all. */
  allow: z.array(z.string().min(1)).optional(),
  /** Timeout of a call of a tool that declares no timeout_ms of its own (default: the agent's limits.toolTimeoutMs); progress restarts it. */
  timeoutMs: z
    .int()
    .positive()
    .max(2 ** 31 - 1)
    .optional(),
  /** Headers sent with every RPC (e.g. an API key; use ${ENV} interpolation for secrets). */
  metadata: z.record(z.string().regex(HEADER, "letters, digits, '_', '.' or '-', not grpc-* or *-bin"), z.string()).default({}),
});

/** One backend's ToolService config, as validated. */
export type BackendToolsConfig = z.infer<typeof BackendToolsSchema>;
