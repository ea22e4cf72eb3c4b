// A tool plugin: one tool, its input a zod schema (converted to the JSON Schema the model sees).
// docs/tools.md#tool-plugins explains every field.
import { definePlugin, defineTool } from "@qingyu/plugin-api";
import { z } from "zod";

const SKIES = ["clear", "cloudy", "rain", "snow"];

export default definePlugin({
  name: "weather",
  kind: "tool",
  setup: () =>
    defineTool({
      name: "weather",
      description: "Today's weather in a city",
      input: z.object({ city: z.string().min(1).describe("City name, e.g. Paris") }),
      idempotent: true,
      // A stand-in for a weather API: deterministic, so the example's output is too.
      execute: ({ city }: { city: string }) => ({ city, sky: SKIES[city.length % SKIES.length], celsius: 10 + (city.length % 15) }),
    }),
});
