import { describe, expect, it } from "vitest";
import { InterpolationError, parseConfigText, substitute } from "../../src/config/interpolate.mjs";

/** The InterpolationError `run` throws. */
function refusal(run: () => unknown): InterpolationError {
  let err: unknown;
  try {
    run();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(InterpolationError);
  return err as InterpolationError;
}

describe("substitute", () => {
  it("reads ${VAR}, and ${VAR:-default} when the variable is unset or empty", () => {
    const env = { HOST: "10.0.0.2", EMPTY: "" };
    expect(substitute("${HOST}", env)).toBe("10.0.0.2");
    expect(substitute("${HOST:-127.0.0.1}", env)).toBe("10.0.0.2");
    expect(substitute("${NOPE:-127.0.0.1}", env)).toBe("127.0.0.1");
    expect(substitute("${EMPTY:-fallback}", env)).toBe("fallback");
    expect(substitute("${EMPTY}", env)).toBe("");
    expect(substitute("${NOPE:-}", env)).toBe("");
  });

  it("replaces every reference in a string, keeps the text around them, and takes a default with any character but }", () => {
    expect(substitute("http://${H:-localhost}:${P:-8000}/v1", { P: "9000" })).toBe("http://localhost:9000/v1");
    expect(substitute("${URL:-postgres://u@db:5432/x?ssl=true}", {})).toBe("postgres://u@db:5432/x?ssl=true");
  });

  it("leaves text without references alone, and $${ is a literal ${", () => {
    expect(substitute("cost: $5 {braces}", {})).toBe("cost: $5 {braces}");
    expect(substitute("$${HOME} stays", { HOME: "/root" })).toBe("${HOME} stays");
    expect(substitute("a $${ b", {})).toBe("a ${ b");
  });

  it("a variable that is not set and has no default is an error naming the key path and the variable", () => {
    const err = refusal(() => substitute("${OPENAI_BASE_URL}", {}, ["providers", "openai", "options", "baseUrl"]));
    expect(err.message).toBe(
      "providers.openai.options.baseUrl: environment variable OPENAI_BASE_URL is not set (the value says ${OPENAI_BASE_URL}): set it, or give a default with ${OPENAI_BASE_URL:-default}",
    );
    expect(err.variable).toBe("OPENAI_BASE_URL");
    expect(err.path).toEqual(["providers", "openai", "options", "baseUrl"]);
  });

  it("a malformed reference is an error saying how to write one", () => {
    expect(refusal(() => substitute("${1ABC}", {}, ["a"])).message).toBe(
      'a: malformed reference "${1ABC}": write ${NAME} or ${NAME:-default} (and $${ for a literal ${)',
    );
    expect(refusal(() => substitute("x ${HOST", {}, ["a"])).message).toContain('malformed reference "${HOST"');
    expect(refusal(() => substitute("${A-b}", {}, ["a"])).message).toContain('malformed reference "${A-b}"');
  });
});

describe("parseConfigText", () => {
  it("types an unquoted YAML value as YAML would after substitution; a quoted one stays a string", () => {
    const yaml = `
server:
  host: \${HOST:-127.0.0.1}
  port: \${GRPC_PORT:-50051}
  httpPort: "\${HTTP:-8080}"
  metricsPort: \${METRICS:-null}
  reflection: \${REFLECTION:-false}
agents:
  - id: assistant
    model: \${OPENAI_MODEL:-gpt-4o-mini}
    description: '\${DESC:-42}'
`;
    expect(parseConfigText(yaml, "yaml", { GRPC_PORT: "6000" })).toEqual({
      server: { host: "127.0.0.1", port: 6000, httpPort: "8080", metricsPort: null, reflection: false },
      agents: [{ id: "assistant", model: "gpt-4o-mini", description: "42" }],
    });
  });

  it("keeps a variable's text one value: YAML in it is not parsed, however it reads", () => {
    const env = { A: "x\nevil: true", B: "[1, 2]", C: "{a: 1}", D: "# not a comment" };
    expect(parseConfigText("a: ${A}\nb: ${B}\nc: ${C}\nd: ${D}\n", "yaml", env)).toEqual({ a: env.A, b: env.B, c: env.C, d: env.D });
  });

  it("reads neither keys nor comments", () => {
    expect(parseConfigText("# ${NOT_SET} in a comment\n${KEY}: 1\n", "yaml", {})).toEqual({ ["${KEY}"]: 1 });
  });

  it("names the full key path, through lists and flow mappings, of a variable that is not set", () => {
    const yaml = "agents:\n  - id: a\n  - id: b\n    model: ${MODEL_B}\nredis: { url: '${REDIS_URL}' }\n";
    expect(refusal(() => parseConfigText(yaml, "yaml", { REDIS_URL: "redis://r" })).message).toMatch(
      /^agents\.1\.model: environment variable MODEL_B is not set/,
    );
    expect(refusal(() => parseConfigText(yaml, "yaml", { MODEL_B: "m" })).message).toMatch(/^redis\.url: environment variable REDIS_URL is not set/);
  });

  it("substitutes JSON string values, which stay strings", () => {
    const json = JSON.stringify({ server: { host: "${HOST:-127.0.0.1}", port: "${P:-1}" }, list: ["${X:-y}"] });
    expect(parseConfigText(json, "json", {})).toEqual({ server: { host: "127.0.0.1", port: "1" }, list: ["y"] });
    expect(refusal(() => parseConfigText(JSON.stringify({ list: [{ k: "${NOPE}" }] }), "json", {})).message).toMatch(/^list\.0\.k: /);
  });

  it("throws the parser's own error for text that does not parse", () => {
    expect(() => parseConfigText("a: [1, 2\n", "yaml", {})).toThrow(/flow sequence/i);
    expect(() => parseConfigText("{ a: ", "json", {})).toThrow(SyntaxError);
  });
});
