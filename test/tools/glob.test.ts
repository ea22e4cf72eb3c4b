import { describe, expect, it } from "vitest";
import { matchesAny, matchesGlob } from "../../src/tools/glob.ts";

describe("tool-name globs", () => {
  it("match * and ? over whole names, and nothing else as special", () => {
    const patterns = ["get_*", "f?il", "a.b", "x+"];
    expect(["get_", "get_issue", "fail", "foil", "a.b", "x+"].filter((n) => matchesAny(patterns, n))).toHaveLength(6);
    expect(["get", "xget_issue", "faail", "axb", "xx", "fail2"].filter((n) => matchesAny(patterns, n))).toEqual([]);
  });

  it("a plain name matches itself only; no patterns match nothing", () => {
    expect(matchesGlob("weather", "weather")).toBe(true);
    expect(matchesGlob("weather", "weather2")).toBe(false);
    expect(matchesAny([], "anything")).toBe(false);
  });
});
