// @qingyu/plugin-api: what a Qingyu plugin imports. No runtime dependencies:
// the host recognises plugins and errors by shape, so any copy of this package
// (a plugin's own node_modules) works with any server implementing its major.
export { PLUGIN_API_VERSION, PLUGIN_KINDS, definePlugin } from "./plugin.ts";
export { pluginShapeProblem } from "./definition.ts";
export type { OptionsSchema, PluginDefinition, PluginHost, PluginKind, PluginProducts, PluginSpec } from "./plugin.ts";
export type {
  AgentContext,
  AgentRunResult,
  GenerationOptions,
  Middleware,
  Next,
  PendingToolCall,
  RpcCall,
  RunEvent,
  ToolCallDecision,
  ToolCallInfo,
  ToolCallRecord,
  ToolOutcome,
} from "./middleware.ts";
export type {
  ChatMessage,
  LlmProvider,
  ProviderCapabilities,
  ProviderChunk,
  ProviderRequest,
  ProviderResult,
  ResponseFormat,
  TokenUsage,
  ToolCall,
  ToolChoice,
  ToolDefinition,
} from "./provider.ts";
export { ToolError, defineTool, type JsonSchemaSource, type Tool, type ToolContext, type ToolInit, type ToolSource, type ToolSpec } from "./tools.ts";
export { EVENT_TYPES } from "./events.ts";
export type { EventBus, EventHandler, EventInit, EventListener, EventType, RuntimeEvent, SubscribeOptions } from "./events.ts";
export type { AgentCatalog, AgentDefinition, AgentLimits } from "./agents.ts";
export type { JsonObject, JsonValue, SessionRecord } from "./sessions.ts";
export { actingUser, type Principal } from "./principal.ts";
export { Code, ConnectError, ProviderError, type ErrorMetadata } from "./errors.ts";
export { ErrorReason, codeReason, invalidArgument, limitExceeded, notFound, reasonOf, withReason, type ErrorReasonInfo } from "./reasons.ts";
export { InvalidOptionsError, formatIssue, validateOptions } from "./options.ts";
export { after, observe, type StreamEnd, type StreamObserver } from "./stream.ts";
export { transformText, type TextTransformOptions } from "./text-stream.ts";
export type {
  AttributeValue,
  Attributes,
  LogFn,
  PluginCounter,
  PluginHistogram,
  PluginLogger,
  PluginMeter,
  PluginSpan,
  PluginTracer,
} from "./observability.ts";
