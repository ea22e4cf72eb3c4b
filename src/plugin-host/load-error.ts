// Why a plugin module did not import, in words an operator can act on: the
// file, and for a syntax error "syntax error at FILE:LINE:COLUMN: what".
// Each loader reports a syntax error its own way:
// - tsx (Node: .ts/.mts files, and files it compiles as CommonJS) rethrows
//   esbuild's error as a TransformError whose message lists
//   "FILE:LINE:COLUMN: ERROR: text" (column 0-based); esbuild's own error has
//   the same in errors[].location;
// - V8 (Node: ES modules tsx hands over untouched) throws a SyntaxError whose
//   stack starts with "FILE or file:// URL:LINE", the source line and a caret
//   when Node decorated it (CommonJS, newer Nodes), and carries no location at
//   all from Node 20's import(): then the runtime is asked (src/runtime);
// - Deno throws a TypeError whose message is "SyntaxError: text", the source
//   line, then "    at file:///FILE:LINE:COLUMN" (sometimes with more after it).
import { fileURLToPath } from "node:url";
import { shownMessage } from "../errors.ts";
import { locateSyntaxError } from "../runtime/syntax-check.ts";

/** A syntax error as far as the error says where it is. */
interface SyntaxProblem {
  /** The file the error is in (the plugin's entry, or a module it imports). */
  file?: string;
  line?: number;
  /** 1-based. */
  column?: number;
  text: string;
}

/**
 * The syntax error `err` reports, or undefined when it is not one. `file` is
 * the module that was imported: tsx names a `.mts`/`.mjs` file `.ts`/`.js` in
 * its messages, and this puts the real name back.
 */
function syntaxProblemOf(err: unknown, file: string): SyntaxProblem | undefined {
  if (!(err instanceof Error)) return undefined;
  const message = String(err.message);
  if (err.name === "TransformError" || /^Transform failed with \d+ errors?:/.test(message)) {
    const located = (err as { errors?: { text?: string; location?: { file: string; line: number; column: number } | null }[] }).errors?.find((e) => e.location);
    if (located?.location) {
      const { location } = located;
      return { file: sameFile(location.file, file), line: location.line, column: location.column + 1, text: located.text ?? message };
    }
    const m = /^(?<at>.+?):(?<line>\d+):(?<column>\d+): ERROR: (?<text>.*)$/m.exec(message)?.groups;
    if (m) return { file: sameFile(m.at!, file), line: Number(m.line), column: Number(m.column) + 1, text: m.text! };
    return { text: /^error: (.*)$/m.exec(message)?.[1] ?? message };
  }
  // Deno: the parser's message, wrapped (in a TypeError) with the location.
  const deno = /^SyntaxError: (?<text>.*)$/.exec(message.split("\n", 1)[0]!)?.groups;
  if (deno && (err instanceof TypeError || err.name === "SyntaxError")) {
    // The location line can go on: "    at file:///x.ts:12:13 at ext:core/01_core.js:405:7".
    const at = /^\s+at (?<url>file:\/\/\S+?):(?<line>\d+):(?<column>\d+)(?!\d)/m.exec(message)?.groups;
    if (!at) return { text: deno.text! };
    return { file: pathOf(at.url!), line: Number(at.line), column: Number(at.column), text: deno.text! };
  }
  if (err.name !== "SyntaxError") return undefined;
  // V8, as Node decorates it: "FILE:LINE\n<source line>\n<caret>\n\nSyntaxError: text".
  const lines = String(err.stack ?? "").split("\n");
  const top = /^(?<at>(?:file:\/\/|\/|[A-Za-z]:\\).*):(?<line>\d+)$/.exec(lines[0]!)?.groups;
  if (top) {
    const caret = /^[ \t]*\^/.exec(lines[2] ?? "")?.[0];
    return { file: pathOf(top.at!), line: Number(top.line), column: caret?.length, text: message };
  }
  // Undecorated: a module V8 could not parse has only the loader's frames in its stack; a
  // SyntaxError the module's code threw while it ran (JSON.parse, new RegExp) has one in a file.
  const ranCode = lines.some((l) => /^\s+at /.test(l) && !/\(?node:/.test(l) && /file:\/\/|[ (]\/|[A-Za-z]:\\/.test(l));
  return ranCode ? undefined : { text: message };
}

/**
 * The reason `file` could not be imported, for "FILE: cannot be loaded: REASON".
 * A syntax error V8 gave no location for is located by the runtime's parser.
 */
export async function loadFailureReason(err: unknown, file: string): Promise<string> {
  let problem = syntaxProblemOf(err, file);
  if (!problem) return otherFailure(err);
  if (problem.line === undefined) {
    const found = await locateSyntaxError(file);
    if (found === "clean") return `syntax error in a module it imports: ${problem.text}`;
    if (found) problem = { file, ...found };
  }
  if (problem.line === undefined) return `syntax error: ${problem.text}`;
  const where = `${problem.file ?? file}:${problem.line}${problem.column === undefined ? "" : `:${problem.column}`}`;
  if (/top-level await is currently not supported with the "cjs" output format/i.test(problem.text)) {
    return (
      `top-level await at ${where}: Node loads this file as CommonJS (no "type": "module" in the nearest package.json), ` +
      `where await needs an async function: name it .mts, or put it in a folder whose package.json says "type": "module"`
    );
  }
  return `syntax error at ${where}: ${problem.text}`;
}

function otherFailure(err: unknown): string {
  const message = shownMessage(err);
  if ((err as { code?: unknown } | null)?.code === "ERR_REQUIRE_CYCLE_MODULE") {
    // What an ES-module-only tsx registration (tsx/esm/api alone) does to a file Node sees as CommonJS.
    return `${message} (Node handed this file to its CommonJS loader without tsx's CommonJS hooks: start the server with \`qingyu\` (bin/qingyu.mjs) or \`node --import tsx\`)`;
  }
  if (err instanceof ReferenceError && /^(require|module|exports|__dirname|__filename) is not defined\b/.test(message)) {
    return `${message} (a CommonJS module loaded as an ES module: its folder needs a package.json saying "type": "commonjs")`;
  }
  return message;
}

// tsx names foo.mts "foo.ts" and foo.mjs "foo.js" in esbuild's messages.
function sameFile(reported: string, file: string): string {
  const path = pathOf(reported);
  const renamed = file.replace(/\.m([jt]s)$/, ".$1").replace(/\.c([jt]s)$/, ".$1");
  return path === file || path === renamed ? file : path;
}

// A path, or a file URL (whose query, a reload's, is dropped) made a path.
function pathOf(at: string): string {
  if (!at.startsWith("file:")) return at;
  const url = at.replace(/[?#].*$/, "");
  try {
    return fileURLToPath(url);
  } catch {
    return url;
  }
}
