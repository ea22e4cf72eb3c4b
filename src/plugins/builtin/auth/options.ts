import { z } from "zod";

/** The JWS algorithms the auth plugin verifies. */
const JWT_ALGORITHMS = ["HS256", "RS256", "ES256"] as const;

/** Shortest HS256 secret accepted, in bytes: RFC 7518 asks for at least the hash size. */
export const MIN_SECRET_BYTES = 32;

const oneOrMany = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

const ApiKey = z.strictObject({
  /** Becomes the principal's id (and so the call's user). Several keys may share an id, for rotation. */
  id: z.string().min(1),
  /** Hex SHA-256 of the key (`hash-key` prints it); the key itself never goes in config. */
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits: the SHA-256 of the key, not the key")
    .transform((hex) => hex.toLowerCase()),
  /** Admins may act as any user and pass every authorization rule. */
  admin: z.boolean().default(false),
  /** Roles for authorization rules ("role:<name>"). */
  roles: z.array(z.string().min(1)).default([]),
});

const Jwt = z
  .strictObject({
    /** Algorithms accepted; a token signed with any other (including "none") is refused. */
    algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1),
    /** HS256 shared secret, inline. */
    secret: z.string().min(MIN_SECRET_BYTES, `must be at least ${MIN_SECRET_BYTES} characters`).optional(),
    /** Name of the environment variable holding the HS256 shared secret. */
    secretEnv: z.string().min(1).optional(),
    /** RS256/ES256 public key, PEM (SPKI, "-----BEGIN PUBLIC KEY-----"). */
    publicKey: z.string().min(1).optional(),
    /** File holding the PEM public key, relative to the config file. */
    publicKeyFile: z.string().min(1).optional(),
    /** JWKS endpoint the RS256/ES256 keys are fetched (and cached) from; tokens pick a key by kid. */
    jwksUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** Accepted "iss" value(s); unchecked when absent. */
    issuer: oneOrMany.optional(),
    /** Accepted "aud" value(s); unchecked when absent. */
    audience: oneOrMany.optional(),
    /** Clock skew allowed when checking exp / nbf / iat. */
    clockToleranceSeconds: z.number().min(0).default(5),
    /** Claim holding the principal id; a dotted path reaches into nested objects. */
    subjectClaim: z.string().min(1).default("sub"),
    /**
     * Put before every subject to make the principal id. API-key ids and JWT subjects are one
     * user namespace: with "" a token whose subject equals an API key's id acts as that key's user.
     * Set e.g. "jwt:" when your identity provider could issue such a subject.
     */
    subjectPrefix: z.string().max(64).default(""),
    /** Claim holding the roles: an array of strings or one space-separated string; dotted paths allowed. */
    rolesClaim: z.string().min(1).default("roles"),
    /** A principal holding this role is an admin. */
    adminRole: z.string().min(1).default("admin"),
    /** Refuse tokens without an "exp" claim (tokens that never expire). */
    requireExpiry: z.boolean().default(true),
  })
  .superRefine((jwt, ctx) => {
    const sources = (["secret", "secretEnv", "publicKey", "publicKeyFile", "jwksUrl"] as const).filter((k) => jwt[k] !== undefined);
    if (sources.length === 0) {
      ctx.addIssue({
        code: "custom",
        message: "needs a key: secret or secretEnv for HS256; publicKey, publicKeyFile or jwksUrl for RS256/ES256",
      });
      return;
    }
    if (sources.length > 1) {
      ctx.addIssue({ code: "custom", message: `give exactly one key source, not ${sources.join(" and ")}` });
      return;
    }
    const symmetric = sources[0] === "secret" || sources[0] === "secretEnv";
    const wrong = jwt.algorithms.filter((alg) => (alg === "HS256") !== symmetric);
    if (wrong.length > 0) {
      // One key source per block also rules out HS/RS confusion (a public key used as an HMAC secret).
      ctx.addIssue({
        code: "custom",
        path: ["algorithms"],
        message: symmetric
          ? `${sources[0]} verifies HS256 only; remove ${wrong.join(", ")}`
          : `${sources[0]} verifies RS256/ES256 only; HS256 needs secret or secretEnv (not both kinds in one block)`,
      });
    }
  });

/** Options of the auth plugin, as config gives them. */
export const AuthOptions = z
  .strictObject({
    /** Accepted API keys, stored as hashes. */
    apiKeys: z.array(ApiKey).default([]),
    /** Accept JWT bearer tokens verified this way. */
    jwt: Jwt.optional(),
    /** Let calls without an authorization header through, with no principal. Bad credentials are still refused. */
    allowAnonymous: z.boolean().default(false),
  })
  .superRefine((opts, ctx) => {
    if (opts.apiKeys.length === 0 && opts.jwt === undefined) {
      ctx.addIssue({ code: "custom", message: "configure apiKeys or jwt (or both); with neither nobody can authenticate" });
    }
    const seen = new Set<string>();
    opts.apiKeys.forEach((key, i) => {
      if (seen.has(key.sha256)) ctx.addIssue({ code: "custom", path: ["apiKeys", i, "sha256"], message: "the same key hash is listed twice" });
      seen.add(key.sha256);
    });
  })
  .prefault({});

/** Validated auth options. */
export type AuthOptions = z.output<typeof AuthOptions>;
/** Validated jwt block. */
export type JwtOptions = NonNullable<AuthOptions["jwt"]>;
/** One validated API key entry. */
export type ApiKeyEntry = AuthOptions["apiKeys"][number];
