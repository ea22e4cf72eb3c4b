import { Code, ConnectError, definePlugin, ErrorReason, type LlmProvider, type ProviderChunk, type ProviderRequest, withReason } from "@qingyu/plugin-api";
import { z } from "zod";
import { codeName, toConnectError } from "../../errors.ts";

const FALLBACK_CODES = ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL"] as const;

const Options = z.strictObject({
  /** Providers (keys of `providers`) tried in order; `model` replaces the agent's model for that one. */
  providers: z.array(z.union([z.string().min(1), z.strictObject({ provider: z.string().min(1), model: z.string().min(1).optional() })])).min(1),
  /** Failures that move on to the next provider; any other failure is the call's. */
  on: z.array(z.enum(FALLBACK_CODES)).min(1).default(["UNAVAILABLE", "RESOURCE_EXHAUSTED"]),
});

/**
 * A provider that tries others in order: when one fails with a listed status
 * before its first token, the next one gets the same request. After a token has
 * reached the client there is no moving on (it would repeat or mix answers).
 */
export default definePlugin({
  name: "fallback",
  kind: "llm-provider",
  configSchema: Options,
  async setup({ options, provider, logger }) {
    const chain: { name: string; model?: string; provider: LlmProvider }[] = [];
    for (const entry of options.providers) {
      const name = typeof entry === "string" ? entry : entry.provider;
      chain.push({ name, model: typeof entry === "string" ? undefined : entry.model, provider: await provider(name) });
    }
    const moveOn = new Set<string>(options.on);
    return {
      async *stream(req: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderChunk> {
        let last: ConnectError | undefined;
        for (const [i, link] of chain.entries()) {
          let yielded = false;
          try {
            for await (const chunk of link.provider.stream(link.model ? { ...req, model: link.model } : req, signal)) {
              yielded = true;
              yield chunk;
            }
            return;
          } catch (err) {
            const error = toConnectError(err);
            if (yielded || signal.aborted || !moveOn.has(codeName(error.code))) throw err;
            last = error;
            if (i < chain.length - 1) {
              logger.warn(
                { provider: link.name, next: chain[i + 1]!.name, status: codeName(error.code), error: error.rawMessage },
                "provider failed; trying the next one",
              );
            }
          }
        }
        // Every provider failed the same way: the last error, retryable or not, is the call's.
        throw last ?? withReason(new ConnectError("no provider answered", Code.Unavailable), ErrorReason.PROVIDER_UNAVAILABLE);
      },
    };
  },
});
