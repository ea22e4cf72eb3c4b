// @qingyu/plugin-api/testing: a small test host, so a plugin can be tested
// without a server. setUp validates options and calls setup as the server
// does; runMiddleware and runProvider run what setup returned. No runtime
// dependencies, no Node-only APIs.
export { setUp, testHost, testAgent, noopTracer, noopMeter, type TestHost, type TestHostOverrides, type TestPlugin } from "./host.ts";
export { runMiddleware, runProvider, collect, agentContext, type ContextInit, type MiddlewareRun, type ProviderRun, type RunTerminal } from "./run.ts";
export { TestEventBus, runtimeEvent } from "./events.ts";
export { TestLogger, type LogLine } from "./logger.ts";
export { InvalidOptionsError, validateOptions, formatIssue } from "../options.ts";
