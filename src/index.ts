// The public API for plugin authors: `import { definePlugin } from "qingyu-agent-runtime"`.
export { definePlugin } from "./plugins/define.ts";
export type { EventHandler, PluginDefinition, PluginHost, PluginKind, PluginProducts } from "./plugins/define.ts";
export type { AgentContext, AgentRunResult, GenerationOptions, Middleware, Next, RpcCall, RunEvent } from "./pipeline/types.ts";
export type { Principal } from "./auth/principal.ts";
export { after, observe, type StreamEnd, type StreamObserver } from "./pipeline/stream.ts";
export { actingUser } from "./auth/principal.ts";
export type { ChatMessage, LlmProvider, ProviderChunk, ProviderRequest, ProviderResult, TokenUsage } from "./providers/types.ts";
export { ProviderError } from "./providers/types.ts";
export type { EventBus, EventType, RuntimeEvent } from "./events/types.ts";
export type { AgentDefinition } from "./agents/types.ts";
export { Code, ConnectError, invalidArgument, notFound } from "./errors.ts";
export { verifyWebhook } from "./plugins/builtin/webhooks/signature.ts";
export type { WebhookPayload } from "./plugins/builtin/webhooks/send.ts";
