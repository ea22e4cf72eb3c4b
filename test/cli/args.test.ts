import { describe, expect, it } from "vitest";
import { commandArgs, portFlag, UsageError } from "../../src/cli/args.ts";

describe("commandArgs", () => {
  const spec = { config: { type: "string" } } as const;

  it("parses a command's options", () => {
    expect(commandArgs("check", ["--config", "x.yaml"], spec)).toEqual({ help: false, values: { config: "x.yaml" }, positionals: [] });
  });

  it("-h and --help ask for the usage, whatever else is given", () => {
    expect(commandArgs("check", ["-h"], spec)).toEqual({ help: true });
    expect(commandArgs("check", ["--config", "x.yaml", "--help"], spec)).toEqual({ help: true });
  });

  it("an option the command does not take is a UsageError naming it, for that command's usage", () => {
    let err: unknown;
    try {
      commandArgs("reload", ["--adress", "x"], spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toContain("'--adress'");
    expect((err as UsageError).command).toBe("reload");
  });
});

describe("portFlag", () => {
  it("takes 0-65535 and refuses anything else, naming the flag", () => {
    expect(portFlag("serve", "--port", undefined)).toBeUndefined();
    expect(portFlag("serve", "--port", "0")).toBe(0);
    expect(portFlag("serve", "--port", "65535")).toBe(65535);
    expect(() => portFlag("serve", "--http-port", "70000")).toThrow('--http-port: expected a port number 0-65535, got "70000"');
    expect(() => portFlag("serve", "--port", "eighty")).toThrow(UsageError);
  });
});
