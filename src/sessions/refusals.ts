import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";

// Refusals of a session that every store, the manager and the acting rules word alike.

/** ABORTED (STALE_VERSION) for a write whose expected_version is not the session's. */
export function staleVersion(sessionId: string, current: number, expected: number): ConnectError {
  return withReason(
    new ConnectError(`session "${sessionId}" is at version ${current}, not the expected ${expected}`, Code.Aborted),
    ErrorReason.STALE_VERSION,
    {
      session_id: sessionId,
      current_version: String(current),
      expected_version: String(expected),
    },
  );
}

/** PERMISSION_DENIED (NOT_SESSION_OWNER) for a session the caller's user does not own. */
export function notSessionOwner(sessionId: string): ConnectError {
  return withReason(new ConnectError(`session "${sessionId}" belongs to another user`, Code.PermissionDenied), ErrorReason.NOT_SESSION_OWNER, {
    session_id: sessionId,
  });
}
