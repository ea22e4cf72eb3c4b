// The in-process tool of the tools phase (bench/tools-phase.ts): it answers a
// small constant at once, so what a call through it costs is the runtime's
// step loop (dispatch, argument check, events, the next model step), not the tool.
// Shared by its plugin (bench/plugins/bench-const.ts), which the phase's server
// loads, and by the in-process dispatch benchmark (bench/tool-dispatch.ts).
import type { Tool } from "@qingyu/plugin-api";

/** The tool's name, as agents list it and the echo script calls it. */
export const CONST_TOOL = "bench_const";

/** The answer every call gets. */
export const CONST_ANSWER = { ok: true, value: 42 };

/** A small schema with one optional property, so the argument check has something to look at. */
export const constTool: Tool = {
  name: CONST_TOOL,
  description: "Answers a constant (bench)",
  inputSchema: { type: "object", properties: { city: { type: "string", maxLength: 64 } }, additionalProperties: false },
  idempotent: true,
  execute: () => CONST_ANSWER,
};
