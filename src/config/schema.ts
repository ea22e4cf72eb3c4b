import { EVENT_TYPES, type EventType } from "@qingyu/plugin-api";
import { z } from "zod";
import { workerProblems } from "./workers-rules.ts";
import { DEFAULT_SESSION_BOUNDS } from "../sessions/bounds.ts";
import { DEFAULT_MAX_CHECKPOINT_DEPTH, MAX_CHECKPOINT_DEPTH } from "../sessions/checkpoint-depth.ts";
import { DEFAULT_PAGE_BYTES } from "../sessions/types.ts";
import { RESERVED_EXTRA_KEYS, ToolChoiceSchema, ToolsSchema } from "./tools-schema.ts";

const port = z.int().min(0).max(65535);
const positiveMs = z.int().positive();

/** A plugin named in config, with its options. A bare string means no options. */
const PluginRefSchema = z.union([
  z.string().min(1),
  z.strictObject({
    plugin: z.string().min(1),
    options: z.unknown().optional(),
    /** Off without deleting the entry. */
    enabled: z.boolean().default(true),
  }),
]);

const GenerationDefaultsSchema = z.strictObject({
  temperature: z.number().min(0).max(2).optional(),
  maxTokens: z.int().positive().optional(),
  /** Provider-specific options passed through untouched (not tools or response_format: those have their own keys). */
  extra: z
    .record(z.string(), z.unknown())
    .superRefine((extra, ctx) => {
      for (const key of Object.keys(extra)) {
        const instead = RESERVED_EXTRA_KEYS[key];
        if (instead) ctx.addIssue({ code: "custom", path: [key], message: `is not passed through: use ${instead}` });
      }
    })
    .optional(),
  /** How the model may use tools: auto (default), none, required, or {name} for one tool. */
  toolChoice: ToolChoiceSchema.optional(),
  /** Whether the model may call several tools in one step (unset: the provider's default). */
  parallelToolCalls: z.boolean().optional(),
});

export const AgentSchema = z
  .strictObject({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "letters, digits, '.', '_' or '-'"),
    description: z.string().default(""),
    /** A key of `providers`. */
    provider: z.string().min(1),
    model: z.string().min(1),
    /** Models a caller may name in options.model besides `model`; "*" allows any; any other is PERMISSION_DENIED. */
    models: z.array(z.string().min(1)).default([]),
    systemPrompt: z.string().default(""),
    defaults: GenerationDefaultsSchema.prefault({}),
    /** The agent is left out (with a log line) unless all these environment variables are set. */
    requireEnv: z.array(z.string()).default([]),
    /** Caps for this agent's calls; an unset one leaves the global limit in force. */
    limits: z
      .strictObject({
        /** Largest task, in UTF-8 bytes; replaces the validation plugin's maxTaskBytes for this agent. */
        maxTaskBytes: z.int().positive().optional(),
        /**
         * Token budget (4 characters a token) of the history in this agent's prompt, newest
         * kept first. It trims what sessions.historyMessages / historyTokens left, so it can
         * narrow that budget, not widen it.
         */
        maxHistoryTokens: z.int().positive().optional(),
        /** Largest max_tokens sent upstream (and sent when the caller asks none); replaces the validation plugin's maxOutputTokens for this agent. */
        maxOutputTokens: z.int().positive().optional(),
        /** Most model steps in one run; reaching it ends the run with finish_reason "max_steps" and what it has. */
        maxSteps: z.int().positive().max(1000).default(10),
        /** Most tool calls in one run; calls beyond it are skipped and the run ends with finish_reason "max_tool_calls". */
        maxToolCalls: z.int().positive().default(64),
        /** A tool call's timeout when its tool sets none, in ms; progress reports restart it. */
        toolTimeoutMs: z
          .int()
          .positive()
          .max(2 ** 31 - 1)
          .default(60_000),
        /** Most tool calls running at once in one run. */
        maxParallelTools: z.int().positive().default(8),
      })
      .prefault({}),
    /** Tools it may use: names and globs ("github__*", "*") over every configured tool source. */
    tools: z.array(z.string().min(1)).default([]),
    /** Names and globs of its tools whose calls wait for a person's approval (durable runs; Execute refuses them), as if they were marked needsApproval. */
    approval: z.array(z.string().min(1)).default([]),
    /** JSON Schema (an object) its final answer must match; a call's options.output_schema replaces it. */
    outputSchema: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((agent, ctx) => {
    // A default above the cap would be refused on every call that relies on it.
    const cap = agent.limits?.maxOutputTokens;
    if (cap !== undefined && agent.defaults.maxTokens !== undefined && agent.defaults.maxTokens > cap) {
      ctx.addIssue({ code: "custom", path: ["defaults", "maxTokens"], message: `is ${agent.defaults.maxTokens}, above limits.maxOutputTokens (${cap})` });
    }
  });

// A Node timer cannot wait longer than 2^31-1 ms; a larger value would fire at once.
const timerMs = positiveMs.max(2 ** 31 - 1);

/** Transport limits, the same on both ports where the protocol allows (README: `server.limits.*`). */
const ServerLimitsSchema = z
  .strictObject({
    /** Largest message received or sent, counted after decompression. */
    maxMessageBytes: z
      .int()
      .positive()
      .default(4 * 1024 * 1024),
    /** Largest request metadata (HTTP headers), counted as HTTP/2 does: name + value + 32 per entry. */
    maxMetadataBytes: z
      .int()
      .positive()
      .default(16 * 1024),
    /** The deadline of a call whose client set none. */
    defaultDeadlineMs: timerMs.default(300_000),
    /** A longer client deadline is cut to this. Long-lived streams (Subscribe, health Watch) are exempt from both. */
    maxDeadlineMs: timerMs.default(900_000),
    /** HTTP/2 streams (calls) open at once on one connection. */
    maxConcurrentStreams: z.int().positive().default(100),
    /** gRPC port: ping a connection after this long without activity... */
    keepaliveTimeMs: timerMs.default(7_200_000),
    /** ...and close it when the ping is not answered within this. */
    keepaliveTimeoutMs: timerMs.default(20_000),
    /** gRPC port: close a connection with no call in flight for this long (GOAWAY; clients reconnect). */
    maxConnectionIdleMs: timerMs.default(300_000),
    /** gRPC port: ask a connection to go away after this long (±10%), so load spreads over new servers. */
    maxConnectionAgeMs: timerMs.default(1_800_000),
    /** Calls still running on a connection past its age get this long before it is closed; default maxDeadlineMs. */
    maxConnectionAgeGraceMs: timerMs.optional(),
    /** Entries one map field of a request (e.g. ExecuteRequest.metadata) may hold; checked on the wire, before the map is built. */
    maxMapEntries: z.int().positive().default(256),
    /** Bytes of one map field's keys and values as sent (protobuf entries, or the JSON object's text); checked before the map is built. */
    maxMapBytes: z
      .int()
      .positive()
      .default(64 * 1024),
    /** Open connections per port; more are closed as they are accepted. Each idle connection costs memory and a file descriptor. */
    maxConnections: z.int().positive().default(10_000),
  })
  .superRefine((limits, ctx) => {
    if (limits.defaultDeadlineMs > limits.maxDeadlineMs) {
      ctx.addIssue({ code: "custom", path: ["defaultDeadlineMs"], message: `must not exceed maxDeadlineMs (${limits.maxDeadlineMs})` });
    }
  })
  .prefault({});

export type ServerLimits = z.infer<typeof ServerLimitsSchema>;

export const ConfigSchema = z
  .strictObject({
    server: z
      .strictObject({
        host: z.string().default("0.0.0.0"),
        /** gRPC (grpc-js); 0 picks a free port. */
        port: port.default(50051),
        /** Connect / gRPC-Web (connect-node); 0 picks a free port, null turns it off. */
        httpPort: port.nullable().default(8080),
        /** Admin port serving Prometheus metrics at GET /metrics; 0 picks a free port, null (the default) turns it off. */
        metricsPort: port.nullable().default(null),
        /** How long in-flight calls may run after SIGTERM before they are cancelled. */
        shutdownGraceMs: positiveMs.default(10_000),
        /** Server processes sharing both ports (Node's cluster), supervised by one more; "auto": one per core. More than one needs shared stores. */
        workers: z.union([z.int().min(1).max(256), z.literal("auto")]).default(1),
        /** Message, deadline and connection limits of both ports (README: `server.limits.*`). */
        limits: ServerLimitsSchema,
        /** Serve gRPC server reflection (grpcurl) on the gRPC port. It lists every service to anyone, without credentials. */
        reflection: z.boolean().default(true),
        /** TLS on both ports; PEM files, relative to the config file. With clientCa, clients must present a certificate it signed. */
        tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1), clientCa: z.string().min(1).optional() }).optional(),
      })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
        /** json: one JSON object a line; pretty: coloured lines for a person; auto: pretty when stdout is a terminal. */
        format: z.enum(["auto", "json", "pretty"]).default("auto"),
      })
      .prefault({}),
    /** Middleware, outermost first. */
    pipeline: z.array(PluginRefSchema).default(["logging", "validation"]),
    /** Named provider instances; agents refer to these names. */
    providers: z.record(z.string(), z.strictObject({ plugin: z.string().min(1), options: z.unknown().optional() })).default({ echo: { plugin: "echo" } }),
    eventHandlers: z.array(PluginRefSchema).default([]),
    /** Tool sources (plugins, MCP servers, backends' ToolService) and the bounds on tool calls. */
    tools: ToolsSchema,
    /** Durable runs (RunService): where they are journaled and how replicas share them. */
    runs: z
      .strictObject({
        /** memory: this process only (runs end with it); postgres: shared (postgres.url); auto: postgres when sessions.store uses PostgreSQL. */
        store: z.enum(["auto", "memory", "postgres"]).default("auto"),
        /** How long a replica owns a run without renewing: after it, another replica may take the run over. */
        leaseMs: timerMs.default(15_000),
        /** How often the owner renews its runs' leases and picks up cancels asked for on other replicas. */
        renewEveryMs: timerMs.default(5_000),
        /** How often a watcher on another replica than the run's reads its journal for new events. */
        pollMs: timerMs.default(250),
        /** Finished runs (and their journals) are deleted this long after they ended. */
        retentionHours: z.number().positive().default(168),
        /** An approval nobody decided this long after its run parked is refused (the model is told it expired), and the run goes on. */
        approvalTimeoutSeconds: z.int().positive().default(86_400),
        /**
         * A tool call that is not idempotent, whose replica died before it finished: "model" records its outcome
         * unknown and tells the model; "approval" parks the run for a person to run it again (same idempotency
         * key, attempt 2) or not (recorded unknown, with their message).
         */
        unknownOutcome: z.enum(["model", "approval"]).default("model"),
      })
      .prefault({}),
    plugins: z
      .strictObject({
        /** Directories scanned for plugin files, relative to the config file. */
        dirs: z.array(z.string()).default(["plugins"]),
        /** npm packages whose default export is a plugin, resolved from the config file's directory. */
        packages: z.array(z.string().min(1)).default([]),
        /** Plugins turned off without deleting them: plugin names, or file / folder names in a plugin directory (those are not even loaded). */
        disabled: z.array(z.string().min(1)).default([]),
      })
      .prefault({}),
    /** Without an `agents` key, one echo agent, so an unconfigured server answers. */
    agents: z.array(AgentSchema).prefault([{ id: "echo", description: "Echoes the task back", provider: "echo", model: "echo-1" }]),
    sessions: z
      .strictObject({
        /** memory: this process only. redis / postgres: shared by every process. redis+postgres: PostgreSQL is the truth, Redis the hot copy. */
        store: z.enum(["memory", "redis", "postgres", "redis+postgres"]).default("memory"),
        ttlSeconds: z.int().positive().default(3600),
        maxTtlSeconds: z
          .int()
          .positive()
          .default(30 * 24 * 3600),
        /** How many of the latest messages go into the prompt. */
        historyMessages: z.int().min(0).default(20),
        /** A token budget for those messages (estimated at 4 characters a token); 0 = no budget. */
        historyTokens: z.int().min(0).default(0),
        /** How many of the latest messages GetSession returns. */
        getMessagesLimit: z.int().min(0).default(200),
        /** Largest checkpoint accepted, as JSON bytes. */
        maxCheckpointBytes: z
          .int()
          .positive()
          .default(1024 * 1024),
        /** Deepest checkpoint data accepted, in levels of objects and lists (`data` is 1): the default is the deepest Python grpcio reads back, the maximum what protobuf-es does. */
        maxCheckpointDepth: z.int().min(1).max(MAX_CHECKPOINT_DEPTH).default(DEFAULT_MAX_CHECKPOINT_DEPTH),
        /** How many checkpoints each session keeps; older ones are pruned as new ones are saved. */
        checkpointsKept: z.int().positive().default(20),
        defaultPageSize: z.int().positive().default(20),
        maxPageSize: z.int().positive().default(100),
        /**
         * A ListSessions / ListCheckpoints page ends early, with a next_page_token, once its items reach this
         * many bytes (ids and metadata, or checkpoint data, as JSON); it always holds at least one. Keep it well
         * under the 4 MiB message limit.
         */
        maxPageBytes: z.int().positive().default(DEFAULT_PAGE_BYTES),
        /** Most metadata entries CreateSession accepts (INVALID_ARGUMENT naming metadata beyond it): every listing carries them. */
        maxMetadataEntries: z.int().min(0).default(DEFAULT_SESSION_BOUNDS.maxMetadataEntries),
        /** Largest metadata key accepted, in UTF-8 bytes. */
        maxMetadataKeyBytes: z.int().positive().default(DEFAULT_SESSION_BOUNDS.maxMetadataKeyBytes),
        /** Largest metadata value accepted, in UTF-8 bytes. */
        maxMetadataValueBytes: z.int().positive().default(DEFAULT_SESSION_BOUNDS.maxMetadataValueBytes),
        /** Largest metadata accepted in all, keys and values, in UTF-8 bytes. */
        maxMetadataBytes: z.int().positive().default(DEFAULT_SESSION_BOUNDS.maxMetadataBytes),
        /**
         * Most live (unexpired) sessions one user may hold; CreateSession beyond it is RESOURCE_EXHAUSTED.
         * 1000 is far above one person's open conversations at the default one-hour TTL, and bounds what one
         * user makes every store (and the memory store's heap) hold; raise it for a service that shares one user id.
         */
        maxSessionsPerUser: z.int().positive().default(DEFAULT_SESSION_BOUNDS.maxSessionsPerUser),
        /** How often expired sessions are swept (memory and postgres; Redis expires keys itself). */
        sweepIntervalMs: positiveMs.default(60_000),
        /** How often readiness pings the store (redis, postgres, tiered). */
        healthCheckIntervalMs: positiveMs.default(2000),
        /** Tiered store: how many of a session's latest messages the Redis copy holds (reads wanting more go to PostgreSQL). */
        hotMessages: z.int().min(0).default(50),
        /** Redis layout: every key starts with this. */
        redisKeyPrefix: z.string().min(1).default("qingyu:"),
        /** PostgreSQL schema holding the session tables (created by migrations at start; must exist). */
        postgresSchema: z
          .string()
          .regex(/^[a-z_][a-z0-9_]*$/, "a lower-case SQL identifier")
          .default("public"),
      })
      .prefault({}),
    executor: z
      .strictObject({
        retry: z
          .strictObject({
            maxAttempts: z.int().min(1).max(10).default(3),
            baseDelayMs: z.int().min(0).default(200),
            maxDelayMs: z.int().min(0).default(10_000),
          })
          .prefault({}),
        batch: z
          .strictObject({
            /** Items of one batch run at once when the request asks no max_concurrency. */
            defaultConcurrency: z.int().positive().default(4),
            /** A larger max_concurrency is cut to this. */
            maxConcurrency: z.int().positive().default(16),
            /** Items one ExecuteBatch may carry; more is INVALID_ARGUMENT. */
            maxItems: z.int().positive().default(100),
            /** Batch items running at once in this process, across every batch and both ports. */
            maxItemsInFlight: z.int().positive().default(64),
            /** Items of admitted batches waiting for a slot; a batch that does not fit is refused whole with RESOURCE_EXHAUSTED (retry-after-ms: 1000). */
            maxQueuedItems: z.int().min(0).default(512),
          })
          .superRefine((batch, ctx) => {
            // A batch of maxItems that could never be admitted would be refused however idle the server.
            if (batch.maxItems > batch.maxItemsInFlight + batch.maxQueuedItems) {
              ctx.addIssue({
                code: "custom",
                path: ["maxItems"],
                message: `is ${batch.maxItems}, more than maxItemsInFlight + maxQueuedItems (${batch.maxItemsInFlight + batch.maxQueuedItems}): such a batch could never run`,
              });
            }
          })
          .prefault({}),
      })
      .prefault({}),
    /** The event bus: memory = this process only; redis = shared by every process on redis.url (EventService subscribers see all). */
    events: z
      .strictObject({
        bus: z.enum(["memory", "redis"]).default("memory"),
        /** The Redis stream is `${keyPrefix}events`. */
        keyPrefix: z.string().min(1).default("qingyu:"),
        /** Entries the stream keeps (approximately); a reader away longer than that loses the oldest. */
        maxLen: z.int().positive().default(10_000),
        /** Types shared across processes; each costs one XADD per event. MIDDLEWARE_EXECUTED (one per stage) stays local unless named. */
        sharedTypes: z
          .array(z.enum(EVENT_TYPES as [EventType, ...EventType[]]))
          .default(["AGENT_STARTED", "AGENT_COMPLETED", "ERROR_OCCURRED", "CHECKPOINT_SAVED", "SESSION_CREATED", "SESSION_DELETED"]),
        /** Largest event on the bus (estimated JSON bytes): a bigger one keeps type, ids and small fields, its long strings are cut, data.truncated set. The Redis stream holds about maxLen × this (default ≈ 41 MB). */
        maxEventBytes: z.int().min(4096).max(1_048_576).default(4096),
        /** Events a Subscribe client may fall behind (the client reads slower than events come) before it is ended with RESOURCE_EXHAUSTED. */
        subscriberMaxEvents: z.int().positive().default(1000),
        /** The same bound in estimated bytes: what one slow subscriber can make the server hold. */
        subscriberMaxBytes: z.int().positive().default(1_048_576),
      })
      .refine((events) => events.subscriberMaxBytes >= events.maxEventBytes, {
        path: ["subscriberMaxBytes"],
        message: "must be at least maxEventBytes, or one large event would end every subscription",
      })
      .prefault({}),
    /** The shared Redis client (session store, rate limits, cache, events). */
    redis: z
      .strictObject({
        url: z.string().optional(),
        commandTimeoutMs: z.number().int().positive().default(2000),
        connectTimeoutMs: z.number().int().positive().default(2000),
      })
      .prefault({}),
    /** The shared PostgreSQL pool (audit, and later sessions). */
    postgres: z
      .strictObject({
        url: z.string().optional(),
        poolSize: z.number().int().positive().default(10),
        connectTimeoutMs: z.number().int().positive().default(2000),
        statementTimeoutMs: z.number().int().positive().default(5000),
      })
      .prefault({}),
  })
  .superRefine((config, ctx) => {
    // A store or bus that needs a server that is not configured is a config error, named at start.
    const needsRedis = config.sessions.store === "redis" || config.sessions.store === "redis+postgres" || config.events.bus === "redis";
    const needsPostgres = config.sessions.store === "postgres" || config.sessions.store === "redis+postgres";
    if (needsRedis && !config.redis.url) {
      ctx.addIssue({
        code: "custom",
        path: ["redis", "url"],
        message: `is required by ${config.events.bus === "redis" ? "events.bus: redis" : `sessions.store: ${config.sessions.store}`} (or set REDIS_URL)`,
      });
    }
    if (needsPostgres && !config.postgres.url) {
      ctx.addIssue({ code: "custom", path: ["postgres", "url"], message: `is required by sessions.store: ${config.sessions.store} (or set DATABASE_URL)` });
    }
    for (const problem of workerProblems(config)) ctx.addIssue({ code: "custom", ...problem });
  });

/** The validated configuration. */
export type Config = z.infer<typeof ConfigSchema>;
