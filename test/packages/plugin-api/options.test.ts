import { definePlugin, InvalidOptionsError, validateOptions, type OptionsSchema } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { z } from "zod";

const middleware = { name: "m", process: (_ctx: unknown, next: () => AsyncIterable<never>) => next() };

// A Standard Schema written by hand, as another validator library would expose it: async, with object path segments.
const handWritten: OptionsSchema<{ level: number }> = {
  "~standard": {
    version: 1,
    vendor: "hand",
    validate: async (value) => {
      const level = (value as { level?: unknown }).level ?? 1;
      if (typeof level !== "number") return { issues: [{ message: "must be a number", path: [{ key: "level" }] }] };
      return { value: { level } };
    },
  },
};

// The server validates every config entry with this (prefix `pipeline.N.options`), and so does the test host.
describe("validateOptions", () => {
  it("gives a schema {} when config names the plugin bare, so its defaults apply", async () => {
    const plugin = definePlugin({ name: "shout", kind: "middleware", configSchema: z.object({ suffix: z.string().default("!") }), setup: () => middleware });
    expect(await validateOptions(plugin, undefined, "pipeline.1.options")).toEqual({ suffix: "!" });
  });

  it("gives a plugin without a schema {} for no options, and its raw options otherwise", async () => {
    const plugin = definePlugin({ name: "raw", kind: "middleware", setup: () => middleware });
    expect(await validateOptions(plugin, undefined, "pipeline.0.options")).toEqual({});
    expect(await validateOptions(plugin, { a: 1 }, "pipeline.0.options")).toEqual({ a: 1 });
  });

  it("accepts any Standard Schema, async ones included, and names each bad key under the entry", async () => {
    const plugin = definePlugin({ name: "hand", kind: "middleware", configSchema: handWritten, setup: () => middleware });
    expect(await validateOptions(plugin, undefined, "pipeline.0.options")).toEqual({ level: 1 });
    await expect(validateOptions(plugin, { level: "high" }, "pipeline.2.options")).rejects.toThrow("  pipeline.2.options.level: must be a number");
  });

  it("says which keys a strict zod object does not know", async () => {
    const plugin = definePlugin({ name: "strict", kind: "middleware", configSchema: z.strictObject({ a: z.number().default(1) }), setup: () => middleware });
    await expect(validateOptions(plugin, { b: 1, c: 2 }, "eventHandlers.0.options")).rejects.toThrow('  eventHandlers.0.options: unknown keys "b", "c"');
  });

  it("throws an InvalidOptionsError whose lines the server indents under the entry", async () => {
    const plugin = definePlugin({ name: "n", kind: "middleware", configSchema: z.object({ n: z.number() }), setup: () => middleware });
    const err = await validateOptions(plugin, { n: "x" }, "providers.main.options").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidOptionsError);
    expect((err as InvalidOptionsError).lines).toEqual(["providers.main.options.n: Invalid input: expected number, received string"]);
  });
});
