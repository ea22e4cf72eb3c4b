import type { AgentDefinition, Tool } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { ToolCatalog, ToolCatalogError } from "../../src/tools/catalog.ts";

const tool = (name: string, inputSchema: Tool["inputSchema"] = { type: "object" }): Tool => ({
  name,
  description: `${name} tool`,
  inputSchema,
  execute: () => name,
});
const agent = (tools: string[]): AgentDefinition => ({
  id: `a-${tools.join("-")}`,
  description: "",
  provider: "p",
  model: "m",
  systemPrompt: "",
  defaults: {},
  tools,
});
const entries = (...tools: Tool[]) => tools.map((t) => ({ tool: t, source: `plugin "${t.name}"` }));

describe("ToolCatalog", () => {
  it("gives an agent the tools its patterns match, narrowed (never widened) by a call's list", () => {
    const catalog = new ToolCatalog(entries(tool("weather"), tool("github__issue"), tool("github__pr"), tool("billing__refund")));
    const clerk = agent(["weather", "github__*"]);
    expect(catalog.forAgent(clerk).tools.map((t) => t.tool.name)).toEqual(["github__issue", "github__pr", "weather"]);
    expect(catalog.forAgent(clerk, ["github__pr", "billing__*"]).tools.map((t) => t.tool.name)).toEqual(["github__pr"]);
    expect(catalog.forAgent(clerk).definitions[2]).toEqual({ name: "weather", description: "weather tool", parameters: { type: "object" } });
    expect(catalog.unmatched(["wether", "github__*", "x?"])).toEqual(["wether", "x?"]);
  });

  it("checks arguments against draft-07 and draft 2020-12 schemas (MCP servers built with zod 4 send 2020-12)", () => {
    const props = { properties: { n: { type: "integer", minimum: 1 } }, required: ["n"] };
    const catalog = new ToolCatalog(
      entries(
        tool("seven", { type: "object", ...props }),
        tool("twenty", { $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", ...props }),
      ),
    );
    for (const name of ["seven", "twenty"]) {
      const set = catalog.forAgent(agent([name]));
      expect(set.get(name)!.check({ n: 2 })).toEqual([]);
      expect(set.get(name)!.check({ n: 0 })).toEqual(["/n must be >= 1"]);
      expect(set.get(name)!.check({})).toEqual(["(arguments) must have required property 'n'"]);
    }
  });

  it("refuses names a model API would refuse, duplicates across sources, and schemas that do not compile", () => {
    expect(() => new ToolCatalog(entries(tool("has space")))).toThrow(ToolCatalogError);
    expect(() => new ToolCatalog([...entries(tool("dup")), { tool: tool("dup"), source: 'mcp server "x"' }])).toThrow(
      'tool "dup" comes from both plugin "dup" and mcp server "x"',
    );
    expect(() => new ToolCatalog(entries(tool("bad", { type: "object", properties: { a: { type: "nope" } } })))).toThrow(/does not compile/);
  });
});
