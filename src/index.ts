// What the server package exports. Plugin authors import @qingyu/plugin-api
// (its own small package); it is re-exported here so plugins written against
// `qingyu-agent-runtime` keep loading.
export * from "@qingyu/plugin-api";
export { verifyWebhook } from "./plugins/builtin/webhooks/signature.ts";
export type { WebhookPayload } from "./plugins/builtin/webhooks/send.ts";
