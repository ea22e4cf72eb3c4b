// bin/qingyu.mjs chooses between dist/ and src/ by their files' times. Checked on a copy of the
// bin in a folder of its own, with stand-ins for the server in dist/ and src/ that say which ran,
// so the repository's own dist/ and src/ (which other suites run) are never touched.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runtime } from "../support/server-process.ts";

const repo = resolve(import.meta.dirname, "../..");

describe.runIf(runtime === "node")("the qingyu bin: dist/ when it is current, else src/ through tsx, saying so", () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "qingyu-bin-"));
    mkdirSync(join(dir, "bin"));
    cpSync(join(repo, "bin/qingyu.mjs"), join(dir, "bin/qingyu.mjs"));
    mkdirSync(join(dir, "packages/plugin-api/dist"), { recursive: true });
    writeFileSync(join(dir, "packages/plugin-api/dist/index.js"), "");
    mkdirSync(join(dir, "dist"));
    writeFileSync(join(dir, "dist/main.js"), 'console.log("dist ran");\n');
    mkdirSync(join(dir, "src/nested"), { recursive: true });
    // TypeScript only tsx can run: a type annotation.
    writeFileSync(join(dir, "src/main.ts"), 'const ran: string = "src ran";\nconsole.log(ran);\n');
    writeFileSync(join(dir, "src/nested/other.ts"), "export {};\n");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(join(repo, "node_modules/tsx"), join(dir, "node_modules/tsx"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const at = (path: string, seconds: number) => utimesSync(join(dir, path), seconds, seconds);
  const run = (env: Record<string, string> = {}) => {
    const out = execFileSync(process.execPath, [join(dir, "bin/qingyu.mjs"), "serve"], {
      env: { ...process.env, QINGYU_FROM_SOURCE: "", ...env },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    return out.trim();
  };
  const runWithStderr = (env: Record<string, string> = {}) => {
    const result = execFileSync("sh", ["-c", `"${process.execPath}" "${join(dir, "bin/qingyu.mjs")}" serve 2>&1`], {
      env: { ...process.env, QINGYU_FROM_SOURCE: "", ...env },
      encoding: "utf8",
    });
    return result.trim().split("\n");
  };

  it("runs dist/ when it was built after every file in src/, and says nothing", () => {
    for (const f of ["src/main.ts", "src/nested/other.ts"]) at(f, 1_000_000);
    writeFileSync(join(dir, "dist/.built"), "");
    at("dist/.built", 2_000_000);
    expect(runWithStderr()).toEqual(["dist ran"]);
  });

  it("runs src/ through tsx when a file in it (however deep) changed after the build, and says so on stderr", () => {
    at("src/nested/other.ts", 3_000_000);
    expect(run()).toBe("src ran");
    const lines = runWithStderr();
    expect(lines[0]).toMatch(/^qingyu: src\/ changed since dist\/ was built: running src\/ through tsx; `npm run build` runs the built server$/);
    expect(lines.slice(1)).toEqual(["src ran"]);
  });

  it("QINGYU_FROM_SOURCE=1 runs src/ without the notice; no dist/.built runs src/ without it too", () => {
    at("src/nested/other.ts", 1_000_000);
    expect(runWithStderr({ QINGYU_FROM_SOURCE: "1" })).toEqual(["src ran"]);
    rmSync(join(dir, "dist/.built"));
    expect(runWithStderr()).toEqual(["src ran"]);
  });
});
