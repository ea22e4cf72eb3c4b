import { type AgentDefinition, Code, reasonOf } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { AgentRegistry, agentRefusal, offersModel } from "../../src/agents/registry.ts";
import { AgentSchema, ConfigSchema } from "../../src/config/schema.ts";

const agent = (models?: string[]): AgentDefinition => ({ id: "a", description: "", provider: "p", model: "own-model", models, systemPrompt: "", defaults: {} });

describe("offersModel", () => {
  it("offers only the agent's own model when it lists none", () => {
    expect(offersModel(agent(), "own-model")).toBe(true);
    expect(offersModel(agent(), "o1-pro")).toBe(false);
    expect(offersModel(agent([]), "o1-pro")).toBe(false);
  });

  it('offers the listed models too, exactly (no prefix or case games), and any model when "*" is listed', () => {
    expect(offersModel(agent(["gpt-4o"]), "gpt-4o")).toBe(true);
    expect(offersModel(agent(["gpt-4o"]), "gpt-4o-2024-05-13")).toBe(false);
    expect(offersModel(agent(["gpt-4o"]), "GPT-4O")).toBe(false);
    expect(offersModel(agent(["*"]), "ft:gpt-4o:other-org")).toBe(true);
  });
});

describe("config: agents[].models and executor.batch bounds", () => {
  it("defaults models to none besides the agent's own, and the batch bounds to 64 in flight and 512 queued", () => {
    expect(AgentSchema.parse({ id: "a", provider: "p", model: "m" }).models).toEqual([]);
    expect(ConfigSchema.parse({}).executor.batch).toEqual({
      defaultConcurrency: 4,
      maxConcurrency: 16,
      maxItems: 100,
      maxItemsInFlight: 64,
      maxQueuedItems: 512,
    });
  });

  it("refuses an empty model name and a zero in-flight bound", () => {
    expect(AgentSchema.safeParse({ id: "a", provider: "p", model: "m", models: [""] }).success).toBe(false);
    expect(ConfigSchema.safeParse({ executor: { batch: { maxItemsInFlight: 0 } } }).success).toBe(false);
  });
});

describe("AgentRegistry.refusal: an unavailable agent is not a typo", () => {
  const registry = new AgentRegistry([agent()], [{ id: "assistant", provider: "openai", missing: ["OPENAI_API_KEY"] }]);

  it("a configured agent that is not served is FAILED_PRECONDITION naming the variable it misses, reason AGENT_UNAVAILABLE", () => {
    const err = registry.refusal("assistant");
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toBe('agent "assistant" is unavailable: OPENAI_API_KEY is not set (the agent requires it for provider "openai")');
    expect(reasonOf(err)).toEqual({ reason: "AGENT_UNAVAILABLE", metadata: { agent_id: "assistant", missing: "OPENAI_API_KEY" } });
    expect(registry.get("assistant")).toBeUndefined();
    expect(registry.unavailable().map((a) => a.id)).toEqual(["assistant"]);
  });

  it("names every variable missing", () => {
    const two = new AgentRegistry([], [{ id: "b", provider: "p", missing: ["A_KEY", "B_URL", "C_ORG"] }]);
    expect(two.refusal("b").rawMessage).toBe('agent "b" is unavailable: A_KEY, B_URL and C_ORG are not set (the agent requires them for provider "p")');
    expect(reasonOf(two.refusal("b")).metadata).toEqual({ agent_id: "b", missing: "A_KEY,B_URL,C_ORG" });
  });

  it("any other id is NOT_FOUND, reason AGENT_NOT_FOUND, from the registry or from a plugin's catalog alike", () => {
    for (const err of [registry.refusal("asistant"), agentRefusal(registry, "asistant"), agentRefusal({ get: () => undefined, list: () => [] }, "asistant")]) {
      expect(err.code).toBe(Code.NotFound);
      expect(err.rawMessage).toBe('agent "asistant" not found');
      expect(reasonOf(err).reason).toBe("AGENT_NOT_FOUND");
    }
    expect(agentRefusal(registry, "assistant").code).toBe(Code.FailedPrecondition);
  });
});
