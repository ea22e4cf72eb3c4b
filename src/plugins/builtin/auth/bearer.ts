import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";

/** How the caller's credentials failed: none sent, not accepted, or expired. */
type AuthReason = typeof ErrorReason.UNAUTHENTICATED | typeof ErrorReason.TOKEN_INVALID | typeof ErrorReason.TOKEN_EXPIRED;

/** UNAUTHENTICATED with a message safe to show the caller; the reason says whether credentials were missing (the default), invalid or expired. */
export function unauthenticated(message: string, reason: AuthReason = ErrorReason.UNAUTHENTICATED): ConnectError {
  return withReason(new ConnectError(message, Code.Unauthenticated), reason);
}

/**
 * The credential of an `authorization: Bearer <credential>` header, or
 * undefined when the header is absent or empty. Any other shape is refused
 * rather than ignored, so a mistyped header never silently means "anonymous".
 */
export function bearerCredential(header: string | undefined): string | undefined {
  if (header === undefined || header.trim() === "") return undefined;
  // RFC 6750: the scheme is case-insensitive; the credential is one token.
  const match = /^Bearer +(\S+)$/i.exec(header.trim());
  if (!match) throw unauthenticated("malformed authorization header: expected Bearer <token>", ErrorReason.TOKEN_INVALID);
  return match[1];
}

/**
 * Whether a credential has the shape of a compact JWT: three dot-separated
 * base64url parts. The signature part may be empty, so an unsigned
 * (`alg: none`) token is recognised as a JWT and refused as one.
 */
export function looksLikeJwt(credential: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(credential);
}
