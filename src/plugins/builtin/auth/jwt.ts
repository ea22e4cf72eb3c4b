import { Code, ConnectError, ErrorReason, type PluginHost, type PluginLogger, type Principal, withReason } from "@qingyu/plugin-api";
import { readFile } from "node:fs/promises";
import { createRemoteJWKSet, errors, importSPKI, jwtVerify, type CryptoKey, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from "jose";
import { unauthenticated } from "./bearer.ts";
import { MIN_SECRET_BYTES, type JwtOptions } from "./options.ts";

/** Verifies a compact JWT and turns its claims into a principal; throws UNAUTHENTICATED (or UNAVAILABLE). */
export type JwtVerifier = (token: string) => Promise<Principal>;

type Host = Pick<PluginHost, "env" | "resolvePath" | "logger">;

/** Loads the configured key (secret, PEM or JWKS) once, and returns the verifier. */
export async function createJwtVerifier(options: JwtOptions, host: Host): Promise<JwtVerifier> {
  const getKey = await keyResolver(options, host);
  const verifyOptions: JWTVerifyOptions = {
    // Pinned: the token's own "alg" header never chooses how it is checked.
    algorithms: [...options.algorithms],
    issuer: options.issuer,
    audience: options.audience,
    clockTolerance: options.clockToleranceSeconds,
    requiredClaims: options.requireExpiry ? ["exp"] : [],
  };
  return async (token) => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, verifyOptions));
    } catch (err) {
      throw jwtFailure(err, host.logger);
    }
    return principalFromClaims(payload, options);
  };
}

async function keyResolver(options: JwtOptions, host: Host): Promise<JWTVerifyGetKey> {
  if (options.secret !== undefined || options.secretEnv !== undefined) {
    const secret = options.secret ?? host.env[options.secretEnv!];
    if (secret === undefined || secret === "") {
      throw new Error(`jwt.secretEnv: environment variable ${options.secretEnv} is not set`);
    }
    const bytes = new TextEncoder().encode(secret);
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new Error(`jwt.secretEnv: the secret in ${options.secretEnv} is shorter than ${MIN_SECRET_BYTES} bytes`);
    }
    return async () => bytes;
  }
  if (options.jwksUrl !== undefined) return jwksResolver(options.jwksUrl, host.logger);

  const where = options.publicKey !== undefined ? "jwt.publicKey" : `jwt.publicKeyFile (${options.publicKeyFile})`;
  let pem = options.publicKey;
  if (pem === undefined) {
    const path = host.resolvePath(options.publicKeyFile!);
    try {
      pem = await readFile(path, "utf8");
    } catch (err) {
      throw new Error(`${where}: cannot read ${path}: ${(err as Error).message}`);
    }
  }
  // WebCrypto keys are bound to one algorithm, so the PEM is imported once per
  // configured algorithm; one it does not fit is a config error, found now.
  const keys = new Map<string, CryptoKey>();
  for (const alg of options.algorithms) {
    try {
      keys.set(alg, await importSPKI(pem, alg));
    } catch (err) {
      throw new Error(`${where} is not a PEM SPKI public key usable for ${alg}: ${(err as Error).message}`);
    }
  }
  // jose checks the token's alg against the pinned list before asking for a key.
  return async (header) => keys.get(header.alg)!;
}

function jwksResolver(url: string, logger: PluginLogger): JWTVerifyGetKey {
  const jwks = createRemoteJWKSet(new URL(url));
  return async (header, token) => {
    try {
      return await jwks(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      // Our key source is down or broken: the token may be fine, so not UNAUTHENTICATED.
      logger.warn({ err, jwksUrl: url }, "cannot load the JWKS");
      throw withReason(new ConnectError("cannot load the token signing keys (JWKS); try again later", Code.Unavailable), ErrorReason.AUTH_UNAVAILABLE);
    }
  };
}

/** A jose verification error as the caller sees it: what was wrong, never the key or the token. */
function jwtFailure(err: unknown, logger: PluginLogger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof errors.JWTExpired) return unauthenticated(err.claim === "exp" ? "token expired" : "token is too old", ErrorReason.TOKEN_EXPIRED);
  if (err instanceof errors.JWTClaimValidationFailed) return unauthenticated(claimFailure(err.claim, err.reason), ErrorReason.TOKEN_INVALID);
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return unauthenticated("unsupported token algorithm", ErrorReason.TOKEN_INVALID);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return unauthenticated("token signature is invalid", ErrorReason.TOKEN_INVALID);
  if (err instanceof errors.JWKSNoMatchingKey) return unauthenticated("token signing key is unknown (no matching kid in the JWKS)", ErrorReason.TOKEN_INVALID);
  if (err instanceof errors.JWKSMultipleMatchingKeys) return unauthenticated("token names no single signing key (give it a kid)", ErrorReason.TOKEN_INVALID);
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return unauthenticated("malformed token", ErrorReason.TOKEN_INVALID);
  logger.warn({ err }, "unexpected JWT verification failure");
  return unauthenticated("token could not be verified", ErrorReason.TOKEN_INVALID);
}

function claimFailure(claim: string, reason: string): string {
  switch (claim) {
    case "aud":
      return "token audience is not accepted";
    case "iss":
      return "token issuer is not accepted";
    case "nbf":
      return "token is not valid yet";
    case "iat":
      return "token issue time (iat) is invalid";
    case "exp":
      return reason === "missing" ? "token has no expiry (exp claim)" : "token expiry (exp claim) is invalid";
    default:
      return `token claim "${claim}" is invalid`;
  }
}

function principalFromClaims(payload: JWTPayload, options: JwtOptions): Principal {
  const id = claimAt(payload, options.subjectClaim);
  if (typeof id !== "string" || id === "") throw unauthenticated(`token has no "${options.subjectClaim}" claim`, ErrorReason.TOKEN_INVALID);
  // The subject becomes a user id, held to the same bound as a user_id a caller sends.
  if (id.length + options.subjectPrefix.length > 128)
    throw unauthenticated(`token's "${options.subjectClaim}" claim is longer than a user id may be (128)`, ErrorReason.TOKEN_INVALID);
  const raw = claimAt(payload, options.rolesClaim);
  const roles =
    typeof raw === "string"
      ? raw.split(" ").filter((r) => r !== "")
      : Array.isArray(raw)
        ? raw.filter((r): r is string => typeof r === "string" && r !== "")
        : [];
  return Object.freeze({ id: options.subjectPrefix + id, admin: roles.includes(options.adminRole), roles: Object.freeze(roles), method: "jwt" });
}

/** A claim by name, or by dotted path into nested objects (e.g. "realm_access.roles"). */
function claimAt(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let value: unknown = payload;
  for (const part of name.split(".")) {
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}
