import { definePlugin, type PluginDefinition } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigSchema } from "../../src/config/schema.ts";
import { checkConfig } from "../../src/plugin-host/check.ts";
import type { CatalogEntry } from "../../src/plugin-host/loader.ts";
import { builtinPlugins } from "../../src/plugins/builtin/index.ts";

// A plugin whose setup must never run under check: it would throw.
const shout = definePlugin({
  name: "shout",
  kind: "middleware",
  configSchema: z.object({ suffix: z.string().default("!") }),
  setup() {
    throw new Error("check must not set plugins up");
  },
});

function catalog(...extra: PluginDefinition[]): Map<string, CatalogEntry> {
  const entries = new Map<string, CatalogEntry>();
  for (const definition of [...builtinPlugins, ...extra])
    entries.set(definition.name, { definition, source: definition === shout ? "/srv/plugins/shout.ts" : "builtin", disabled: false });
  return entries;
}

const config = (raw: unknown) => ConfigSchema.parse(raw);

describe("checkConfig", () => {
  it("passes a plugin named bare whose schema has only defaults, and a provider with no options, setting nothing up", async () => {
    const report = await checkConfig(
      config({ pipeline: ["logging", "shout"], providers: { openai: { plugin: "openai" } }, agents: [{ id: "a", provider: "openai", model: "m" }] }),
      catalog(shout),
      {},
    );
    expect(report).toEqual({ errors: [], warnings: [], checked: 3 });
  });

  it("lists every problem serve would stop at, in serve's words, and goes on after the first", async () => {
    const report = await checkConfig(
      config({
        pipeline: ["logging", { plugin: "shout", options: { suffix: 3 } }, { plugin: "validation", options: { maxTaskBytes: -1 } }, "nothere", "echo"],
        eventHandlers: [{ plugin: "alerting", options: { level: "loud" } }],
        providers: { echo: { plugin: "echo" } },
        agents: [
          { id: "a", provider: "echo", model: "m" },
          { id: "b", provider: "nope", model: "m" },
        ],
      }),
      catalog(shout),
      {},
    );
    expect(report.errors).toEqual([
      'invalid config:\n  agents.1.provider: no provider named "nope" (configured: echo)',
      'pipeline.1: invalid options for plugin "shout" (/srv/plugins/shout.ts):\n  pipeline.1.options.suffix: Invalid input: expected string, received number',
      'pipeline.2: invalid options for plugin "validation" (builtin):\n  pipeline.2.options.maxTaskBytes: Too small: expected number to be >0',
      expect.stringMatching(/^pipeline\.3: no middleware plugin named "nothere" \(known: logging, .*shout\)$/),
      'pipeline.4: plugin "echo" (builtin) is a llm-provider, not a middleware',
      expect.stringMatching(/^eventHandlers\.0: invalid options for plugin "alerting" \(builtin\):\n {2}eventHandlers\.0\.options\.level: /),
    ]);
  });

  it("checks providers a used provider names (a fallback's), and only warns about unused ones", async () => {
    const report = await checkConfig(
      config({
        providers: {
          main: { plugin: "fallback", options: { providers: ["first", "second"] } },
          first: { plugin: "echo", options: { tokenDelayMs: "slow" } },
          second: { plugin: "echo" },
          spare: { plugin: "echo", options: { nope: true } },
        },
        agents: [{ id: "a", provider: "main", model: "m" }],
      }),
      catalog(),
      {},
    );
    expect(report.errors).toEqual([
      expect.stringMatching(/^providers\.first: invalid options for plugin "echo" \(builtin\):\n {2}providers\.first\.options\.tokenDelayMs: /),
    ]);
    expect(report.warnings).toEqual([
      expect.stringMatching(
        /^providers\.spare: invalid options for plugin "echo" \(builtin\):\n {2}providers\.spare\.options: unknown key "nope"\n {2}\(not used by an enabled agent/,
      ),
    ]);
  });

  it("skips entries turned off, and agents whose requireEnv is not set (a warning naming what is missing), as serve does", async () => {
    const report = await checkConfig(
      config({
        pipeline: [{ plugin: "nothere", enabled: false }],
        providers: { echo: { plugin: "echo" } },
        agents: [
          { id: "a", provider: "echo", model: "m" },
          { id: "b", provider: "missing", model: "m", requireEnv: ["B_KEY"] },
        ],
      }),
      catalog(),
      {},
    );
    expect(report.errors).toEqual([]);
    expect(report.warnings).toEqual([
      'agent "b" is unavailable: B_KEY is not set (the agent requires it for provider "missing"); its callers get FAILED_PRECONDITION',
    ]);
  });
});
