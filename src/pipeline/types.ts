import type { AgentContext, RunEvent } from "@qingyu/plugin-api";

/** The innermost handler (the agent call itself). */
export type Terminal = (ctx: AgentContext) => AsyncIterable<RunEvent>;
