import { Code, ConnectError } from "./errors.ts";
import { ErrorReason, withReason } from "./reasons.ts";

/** Who is calling, as an auth middleware established it. */
export interface Principal {
  /** Stable id; becomes the call's user. */
  readonly id: string;
  /** Admins may act for any user and pass every authorization rule. */
  readonly admin: boolean;
  /** Groups the principal belongs to, for authorization rules. */
  readonly roles: readonly string[];
  /** How the principal was established ("api-key", "jwt", or a plugin's own word). */
  readonly method: string;
}

/**
 * The user a call acts as. Without a principal (no auth configured) the
 * request's user_id stands. With one, the principal is the user; a different
 * user_id is refused unless the principal is an admin, who may name anyone.
 */
export function actingUser(principal: Principal | undefined, requested: string): string {
  if (!principal) return requested;
  if (!requested || requested === principal.id) return principal.id;
  if (principal.admin) return requested;
  throw withReason(new ConnectError(`principal "${principal.id}" may not act as user "${requested}"`, Code.PermissionDenied), ErrorReason.PERMISSION_DENIED);
}
