import { EVENT_TYPES, type EventType } from "@qingyu/plugin-api";
import { z } from "zod";

/** Shortest signing secret accepted: HMAC-SHA256 wants a key at least as long as its output. */
const MIN_SECRET_LENGTH = 32;

// An HTTP token (RFC 9110), so a bad name fails at start-up rather than at every POST.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// The headers the plugin sets itself; letting config replace them would break signing or the payload.
const RESERVED_HEADERS = new Set(["content-type", "content-length", "user-agent", "traceparent", "host", "transfer-encoding"]);

const Endpoint = z
  .strictObject({
    /** Where events are POSTed (http or https). */
    url: z.url({ protocol: /^https?$/ }),
    /** HMAC-SHA256 signing secret, inline. */
    secret: z.string().min(MIN_SECRET_LENGTH, `must be at least ${MIN_SECRET_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`).optional(),
    /** Name of the environment variable holding the signing secret. */
    secretEnv: z.string().min(1).optional(),
    /** Only these event types go to this endpoint; all when absent. */
    types: z
      .array(z.enum(EVENT_TYPES as [EventType, ...EventType[]]))
      .min(1)
      .optional(),
    /** Extra request headers (e.g. a receiver's own auth token). */
    headers: z
      .record(z.string().regex(HEADER_NAME, "is not a valid header name"), z.string().regex(/^[^\r\n\0]*$/, "must not contain line breaks"))
      .default({}),
  })
  .superRefine((endpoint, ctx) => {
    // Unsigned webhooks are not offered: a receiver could not tell ours from anyone's.
    if ((endpoint.secret === undefined) === (endpoint.secretEnv === undefined)) {
      ctx.addIssue({ code: "custom", message: "give exactly one of secret or secretEnv: every webhook is signed" });
    }
    for (const name of Object.keys(endpoint.headers)) {
      const lower = name.toLowerCase();
      if (RESERVED_HEADERS.has(lower) || lower.startsWith("x-qingyu-")) {
        ctx.addIssue({ code: "custom", path: ["headers", name], message: `"${name}" is set by the webhooks plugin itself` });
      }
    }
  });

/** Options of the webhooks plugin, as config gives them. */
export const WebhookOptions = z
  .strictObject({
    /** Receivers; each gets every selected event. */
    endpoints: z.array(Endpoint).min(1),
    /** Longest one POST may take, response included. */
    timeoutMs: z.int().min(1).max(300_000).default(5_000),
    /** Tries per event and endpoint, the first included. */
    maxAttempts: z.int().min(1).max(100).default(5),
    /** First retry waits up to this (full jitter); doubles with each attempt. */
    baseDelayMs: z.int().min(0).default(500),
    /** Cap on a retry's wait, Retry-After included. */
    maxDelayMs: z.int().min(0).default(30_000),
    /** Deliveries waiting (new or for a retry), across endpoints; beyond it the oldest is dropped and logged. */
    maxQueue: z.int().min(1).default(10_000),
    /** POSTs in flight at once per endpoint. */
    concurrency: z.int().min(1).max(256).default(4),
    /** Longest dispose waits for queued and in-flight deliveries before logging them as undeliverable. */
    drainTimeoutMs: z.int().min(0).max(600_000).default(5_000),
  })
  .refine((o) => o.maxDelayMs >= o.baseDelayMs, { path: ["maxDelayMs"], message: "must be at least baseDelayMs" });

/** Validated (and defaulted) options of the webhooks plugin. */
export type WebhookOptions = z.infer<typeof WebhookOptions>;

/** One endpoint of the validated options. */
export type WebhookEndpointOptions = WebhookOptions["endpoints"][number];

/** The endpoint's secret; secretEnv is read from the host's environment now, at setup. */
export function resolveSecret(endpoint: WebhookEndpointOptions, env: Readonly<Record<string, string | undefined>>, index: number): string {
  if (endpoint.secret !== undefined) return endpoint.secret;
  const name = endpoint.secretEnv!;
  const secret = env[name];
  const where = `webhooks: endpoints[${index}].secretEnv`;
  if (!secret) throw new Error(`${where}: environment variable ${name} is not set`);
  if (secret.length < MIN_SECRET_LENGTH) throw new Error(`${where}: the secret in ${name} is shorter than ${MIN_SECRET_LENGTH} characters`);
  return secret;
}

/** The types the handler subscribes to: the union of the endpoints', or "any" when one takes all. */
export function handlerTypes(endpoints: readonly WebhookEndpointOptions[]): readonly EventType[] | "any" {
  if (endpoints.some((e) => !e.types)) return "any";
  return [...new Set(endpoints.flatMap((e) => e.types!))];
}
