import { execFile } from "node:child_process";
import { extname } from "node:path";
import process from "node:process";

/** Where the runtime's own parser finds a file's first syntax error. */
export interface SyntaxLocation {
  line: number;
  /** 1-based. */
  column?: number;
  text: string;
}

/**
 * Asks the runtime where the syntax error in a JavaScript module is, for
 * errors that came without a location. Node 20's `import()` of an ES module
 * V8 cannot parse rejects with a bare `SyntaxError: Unexpected token ';'`: the
 * file and line V8 knows are kept in a private property that only an uncaught
 * error's printout shows. `node --check FILE` prints them (`FILE:LINE`, the
 * source line, a caret under the column). Resolves "clean" when the file
 * itself parses (the error is in a module it imports), undefined when it
 * cannot tell (not JavaScript, Deno — whose errors carry their location —,
 * or the check did not run).
 */
export function locateSyntaxError(file: string): Promise<SyntaxLocation | "clean" | undefined> {
  if ("Deno" in globalThis || ![".js", ".mjs", ".cjs"].includes(extname(file))) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    execFile(process.execPath, ["--check", file], { timeout: 10_000, encoding: "utf8" }, (err, _stdout, stderr) => {
      if (!err) return resolve("clean");
      const where = /^(?<file>.+):(?<line>\d+)\r?\n(?<source>.*)\r?\n(?<caret>[ \t]*\^)/.exec(stderr);
      const text = /^SyntaxError: (?<text>.*)$/m.exec(stderr)?.groups?.text;
      if (!where?.groups || text === undefined) return resolve(undefined);
      resolve({ line: Number(where.groups.line), column: where.groups.caret!.length, text });
    });
  });
}
