import { definePlugin } from "@qingyu/plugin-api";
import { DeliveryQueue } from "./delivery-queue.ts";
import { WebhookOptions, handlerTypes, resolveSecret } from "./options.ts";

export { verifyWebhook, signWebhook } from "./signature.ts";

/**
 * POSTs selected runtime events as signed JSON to HTTP endpoints, retrying
 * with backoff; what cannot be delivered is logged in full. See docs/webhooks.md.
 */
export default definePlugin({
  name: "webhooks",
  kind: "event-handler",
  configSchema: WebhookOptions,
  setup({ options, logger, env }) {
    const targets = options.endpoints.map((endpoint, i) => ({
      url: endpoint.url,
      secret: resolveSecret(endpoint, env, i),
      headers: endpoint.headers,
      types: endpoint.types && new Set(endpoint.types),
    }));
    const queue = new DeliveryQueue(targets, options, logger);
    return {
      types: handlerTypes(options.endpoints),
      // Only queues: the bus is never held up by a slow receiver.
      handle: (event) => queue.enqueue(event),
      dispose: () => queue.dispose(),
    };
  },
});
