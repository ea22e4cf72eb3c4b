import { actingUser, after, type AgentContext, definePlugin, ErrorReason, type Principal } from "@qingyu/plugin-api";
import { createApiKeyVerifier } from "./api-keys.ts";
import { bearerCredential, looksLikeJwt, unauthenticated } from "./bearer.ts";
import { AuthOptions } from "./options.ts";

/**
 * Authenticates every call from `authorization: Bearer <credential>`: an API
 * key (checked against stored hashes) or a JWT. The principal becomes the
 * call's user; a non-admin naming another user_id is refused.
 */
function actAs(ctx: AgentContext, principal: Principal | undefined): void {
  // An anonymous call (allowAnonymous) acts as nobody: naming a user would spend that user's limits and fill their event stream.
  if (!principal) {
    if (ctx.requestedUserId) throw unauthenticated("anonymous callers may not act as a user: send credentials or leave user_id empty");
    return;
  }
  ctx.principal = principal;
  ctx.userId = actingUser(principal, ctx.requestedUserId);
}

export default definePlugin({
  name: "auth",
  kind: "middleware",
  configSchema: AuthOptions,
  async setup(host) {
    const { options } = host;
    const apiKey = createApiKeyVerifier(options.apiKeys);
    // JWT support (jose) is imported only by a pipeline that accepts JWTs.
    const jwt = options.jwt ? await (await import("./jwt.ts")).createJwtVerifier(options.jwt, host) : undefined;

    /**
     * The caller's principal; undefined only for an anonymous call that
     * allowAnonymous lets through. Synchronous for API keys (the common case
     * between services), a promise for JWTs.
     */
    function authenticate(header: string | undefined): Principal | undefined | Promise<Principal> {
      const credential = bearerCredential(header);
      if (credential === undefined) {
        if (options.allowAnonymous) return undefined;
        throw unauthenticated("missing credentials: send authorization: Bearer <token>");
      }
      if (looksLikeJwt(credential)) {
        if (!jwt) throw unauthenticated("JWT bearer tokens are not accepted here; send an API key", ErrorReason.TOKEN_INVALID);
        return jwt(credential);
      }
      if (options.apiKeys.length === 0) throw unauthenticated("API keys are not accepted here; send a JWT", ErrorReason.TOKEN_INVALID);
      const principal = apiKey(credential);
      if (!principal) throw unauthenticated("unknown API key", ErrorReason.TOKEN_INVALID);
      return principal;
    }

    return {
      name: "auth",
      process(ctx, next) {
        // Set by the host when the call was admitted (by admit() below) on its headers before decoding.
        const principal = ctx.principal ?? authenticate(ctx.header("authorization"));
        // No layer of our own around the stream: auth only needs to run before it.
        if (principal instanceof Promise)
          return after(
            principal.then((p) => actAs(ctx, p)),
            next,
          );
        actAs(ctx, principal);
        return next();
      },
      async admit(call) {
        const principal = await authenticate(call.header("authorization"));
        if (principal) call.principal = principal;
      },
    };
  },
});
