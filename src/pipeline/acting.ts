import { actingUser, Code, ConnectError, type Principal } from "@qingyu/plugin-api";
import { quote } from "../quote.ts";
import { notSessionOwner } from "../sessions/refusals.ts";

// Which user a call acts as, and so whose sessions and events it may touch: the
// one owner of that rule. Services (session and event RPCs) and the executor
// (agent runs, their session and their events) all ask here, so an anonymous
// caller, an admin and an ordinary user are treated alike on every RPC.

/** Who is calling, as the rules below need it. */
export interface Caller {
  /** Auth is configured (some middleware has an `admit` hook). */
  guarded: boolean;
  /** The principal auth established; undefined without auth, or for an anonymous call. */
  principal: Principal | undefined;
}

/** Auth is configured and let this call through without credentials (allowAnonymous). */
export function isAnonymous(caller: Caller): boolean {
  return caller.guarded && !caller.principal;
}

/**
 * The user a call acts as: actingUser's rule (the principal, or a user an
 * admin names), plus anonymity: on a guarded server a call that authenticated
 * as nobody acts as no user and may not name one — otherwise allowAnonymous
 * would let anyone read bob's data by sending user_id "bob".
 */
export function callUser(caller: Caller, requested: string): string {
  if (isAnonymous(caller)) {
    if (requested) throw new ConnectError(`anonymous callers may not act as a user (user_id ${quote(requested)}): send credentials`, Code.Unauthenticated);
    return "";
  }
  return actingUser(caller.principal, requested);
}

/** The refusal of any session use by an anonymous call: a session id alone is no credential. */
export function anonymousSessions(): ConnectError {
  return new ConnectError("sessions need credentials: anonymous callers may not use them", Code.Unauthenticated);
}

/**
 * Whose sessions a session RPC may touch: the acting user's, or anyone's ("")
 * for an admin that named no user. An anonymous caller may touch none.
 */
export function sessionOwner(caller: Caller, user: string): string {
  if (isAnonymous(caller)) throw anonymousSessions();
  return caller.principal?.admin && user === caller.principal.id ? "" : user;
}

/**
 * Whose durable runs an RPC may touch: the acting user's, or anyone's ("")
 * for an admin that named no user. An anonymous caller may start or touch none:
 * a run outlives its call, and someone must own it.
 */
export function runOwner(caller: Caller, user: string): string {
  if (isAnonymous(caller)) throw new ConnectError("runs need credentials: anonymous callers may not use them", Code.Unauthenticated);
  return caller.principal?.admin && user === caller.principal.id ? "" : user;
}

/**
 * The user an agent run acts as once its session is known, or a refusal. A
 * run that named no user acts as the session's owner, and so does an admin
 * that named none; anyone else must own it.
 */
export function turnUser(caller: Caller, user: string, requested: string, session: { id: string; userId: string }): string {
  if (isAnonymous(caller)) throw anonymousSessions();
  if (!user || (caller.principal?.admin && !requested)) return session.userId;
  if (session.userId !== user) throw notSessionOwner(session.id);
  return user;
}

/**
 * The user an event of a call is about. With auth configured, a call no
 * principal vouched for (refused, or anonymous) is nobody's: a refused
 * caller's claimed user_id must not put events into that user's stream. Only
 * an admin acts for others; anyone else's event is theirs.
 */
export function eventUser(caller: Caller, user: string): string | undefined {
  const { principal } = caller;
  if (!principal) return caller.guarded ? undefined : user || undefined;
  return (principal.admin ? user || principal.id : principal.id) || undefined;
}

/**
 * Which events a subscriber sees, by their user: an admin, those of the user
 * it names (all with none); anyone else, their own (the acting user's, all
 * without auth and a user_id); an anonymous subscriber, only nobody's.
 */
export function eventAudience(caller: Caller, user: string, requested: string): (eventUser: string | undefined) => boolean {
  if (isAnonymous(caller)) return (eventUser) => !eventUser;
  const only = caller.principal?.admin ? requested : user;
  return only ? (eventUser) => eventUser === only : () => true;
}
