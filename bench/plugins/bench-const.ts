// The tool plugin of the tools phase: one in-process tool answering a constant
// (bench/const-tool.ts). Loaded with the other plugins of this directory by
// every bench server; only the tools phase's server names it in tools.plugins.
import { definePlugin } from "../../src/index.ts";
import { constTool } from "../const-tool.ts";

export default definePlugin({
  name: "bench-const",
  kind: "tool",
  setup: () => constTool,
});
