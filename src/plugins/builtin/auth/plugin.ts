import { actingUser, type Principal } from "../../../auth/principal.ts";
import type { RunEvent } from "../../../pipeline/types.ts";
import { definePlugin } from "../../define.ts";
import { createApiKeyVerifier } from "./api-keys.ts";
import { bearerCredential, looksLikeJwt, unauthenticated } from "./bearer.ts";
import { createJwtVerifier } from "./jwt.ts";
import { AuthOptions } from "./options.ts";

/**
 * Authenticates every call from `authorization: Bearer <credential>`: an API
 * key (checked against stored hashes) or a JWT. The principal becomes the
 * call's user; a non-admin naming another user_id is refused.
 */
export default definePlugin({
  name: "auth",
  kind: "middleware",
  configSchema: AuthOptions,
  async setup(host) {
    const { options } = host;
    const apiKey = createApiKeyVerifier(options.apiKeys);
    const jwt = options.jwt ? await createJwtVerifier(options.jwt, host) : undefined;

    /** The caller's principal; undefined only for an anonymous call that allowAnonymous lets through. */
    async function authenticate(header: string | undefined): Promise<Principal | undefined> {
      const credential = bearerCredential(header);
      if (credential === undefined) {
        if (options.allowAnonymous) return undefined;
        throw unauthenticated("missing credentials: send authorization: Bearer <token>");
      }
      if (looksLikeJwt(credential)) {
        if (!jwt) throw unauthenticated("JWT bearer tokens are not accepted here; send an API key");
        return jwt(credential);
      }
      if (options.apiKeys.length === 0) throw unauthenticated("API keys are not accepted here; send a JWT");
      const principal = apiKey(credential);
      if (!principal) throw unauthenticated("unknown API key");
      return principal;
    }

    return {
      name: "auth",
      async *process(ctx, next): AsyncIterable<RunEvent> {
        const principal = await authenticate(ctx.header("authorization"));
        if (principal) {
          ctx.principal = principal;
          ctx.userId = actingUser(principal, ctx.requestedUserId);
        }
        yield* next();
      },
      async admit(call) {
        const principal = await authenticate(call.header("authorization"));
        if (principal) call.principal = principal;
      },
    };
  },
});
