import { type AgentContext, type AgentDefinition, Code, ConnectError, type GenerationOptions } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import validationPlugin from "../../../src/plugins/builtin/validation.ts";
import { agentContext, collect, setUpPlugin, terminal, testAgent } from "../../support/plugin-context.ts";

const limited: AgentDefinition = { ...testAgent, id: "small", limits: { maxTaskBytes: 10, maxOutputTokens: 100 } };

function contextFor(agent: AgentDefinition, task: string, options: GenerationOptions = {}): AgentContext {
  return { ...agentContext({ task }), agentId: agent.id, agent, options };
}

/** Runs the plugin once: the refusal it throws, or undefined when the call went through. */
async function refusal(ctx: AgentContext, rawOptions: unknown = {}): Promise<ConnectError | undefined> {
  const validation = await setUpPlugin(validationPlugin, rawOptions, { agents: [testAgent, limited] });
  const t = terminal();
  try {
    await collect(validation.process(ctx, t.next));
  } catch (err) {
    expect(t.calls).toBe(0);
    return err as ConnectError;
  }
  expect(t.calls).toBe(1);
  return undefined;
}

describe("validation: per-agent limits", () => {
  it("refuses a task over the agent's maxTaskBytes, naming task, the agent and its limit", async () => {
    const err = await refusal(contextFor(limited, "x".repeat(11)));

    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toBe('task: is 11 bytes; the limit for agent "small" is 10');
  });

  it("counts UTF-8 bytes, not characters", async () => {
    expect(await refusal(contextFor(limited, "ééééé"))).toBeUndefined();
    expect((await refusal(contextFor(limited, "éééééé")))?.rawMessage).toMatch(/^task: is 12 bytes/);
  });

  it("the agent's maxTaskBytes replaces the global one, larger or smaller", async () => {
    const roomy: AgentDefinition = { ...testAgent, id: "roomy", limits: { maxTaskBytes: 50 } };

    expect(await refusal(contextFor(roomy, "y".repeat(40)), { maxTaskBytes: 20 })).toBeUndefined();
    expect((await refusal(contextFor(testAgent, "y".repeat(40)), { maxTaskBytes: 20 }))?.rawMessage).toBe("task: is 40 bytes; the limit is 20");
  });

  it("refuses max_tokens above the agent's maxOutputTokens, naming options.max_tokens", async () => {
    const err = await refusal(contextFor(limited, "hi", { maxTokens: 101 }));

    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toBe('options.max_tokens: must be at most 100 for agent "small"');
    expect(await refusal(contextFor(limited, "hi", { maxTokens: 100 }))).toBeUndefined();
  });

  it("without agent limits the global ones apply", async () => {
    const err = await refusal(contextFor(testAgent, "hi", { maxTokens: 33_000 }));

    expect(err?.rawMessage).toBe("options.max_tokens: must be at most 32768");
    expect(await refusal(contextFor(testAgent, "z".repeat(1000), { maxTokens: 32_768 }))).toBeUndefined();
  });
});

describe("config: agents[].limits", () => {
  const agent = { id: "a", provider: "echo", model: "echo-1" };

  it("are optional (only the tool loop's limits have defaults), strict, and a default maxTokens above the cap is a config error", async () => {
    const { ConfigSchema } = await import("../../../src/config/schema.ts");
    expect(ConfigSchema.parse({ agents: [agent] }).agents[0]!.limits).toEqual({ maxSteps: 10, maxToolCalls: 64, toolTimeoutMs: 60_000, maxParallelTools: 8 });
    expect(ConfigSchema.safeParse({ agents: [{ ...agent, limits: { maxTaskBytes: 5, maxTaskbytes: 5 } }] }).success).toBe(false);

    const res = ConfigSchema.safeParse({ agents: [{ ...agent, defaults: { maxTokens: 200 }, limits: { maxOutputTokens: 100 } }] });

    expect(res.success).toBe(false);
    expect(res.error?.issues[0]).toMatchObject({ path: ["agents", 0, "defaults", "maxTokens"], message: "is 200, above limits.maxOutputTokens (100)" });
  });
});
