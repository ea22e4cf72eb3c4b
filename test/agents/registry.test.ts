import type { AgentDefinition } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { offersModel } from "../../src/agents/registry.ts";
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
