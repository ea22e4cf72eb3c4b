// The generated clients a backend uses (clients/python, clients/go, packages/client):
// each language's example tour runs against the real server and must see the same
// outcomes; and the committed generated code must be what `npm run generate:clients`
// makes from proto/ today.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logged, publicApi, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { runPython } from "../support/python.ts";
import { runProcess, startServer, type ServerProcess } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";

const root = resolve(import.meta.dirname, "../..");
const bin = join(root, "node_modules/.bin");
const found = (cmd: string): boolean => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
// Go from Debian: golang-go, and the libraries as GOPATH sources: golang-google-grpc-dev and
// golang-github-golang-protobuf-1-5-dev (grpc-go's codec; the 1.3 package it pulls in by default
// cannot marshal today's generated messages, and lacks registry.go).
const gocode = "/usr/share/gocode";
const hasGo =
  found("go") &&
  ["google.golang.org/grpc", "google.golang.org/protobuf", "github.com/golang/protobuf/proto/registry.go"].every((p) => existsSync(join(gocode, "src", p)));

// The echo provider's reply, except that a task asking to "stop early" sends its first word
// and then holds until the client's cancel reaches it: the cancel is part of every tour,
// and this way it lands mid-stream however slow the machine, and the server must see it.
const holdProvider = `import { definePlugin } from ${JSON.stringify(publicApi)};
export default definePlugin({
  name: "hold",
  kind: "llm-provider",
  setup({ logger }) {
    return {
      async *stream(req, signal) {
        const history = req.messages.filter((m) => m.role !== "system").length - 1;
        const task = req.messages.at(-1).content;
        const words = \`[history=\${history}] \${task}\`.split(/(?<=\\s)/);
        for (const [i, word] of words.entries()) {
          yield { type: "delta", text: word };
          if (i === 0 && task.includes("stop early")) {
            await new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", resolve, { once: true })));
            logger.warn("hold: the client cancelled");
            throw signal.reason;
          }
        }
        yield { type: "finish", finishReason: "stop", model: req.model, usage: { inputTokens: 1, outputTokens: words.length } };
      },
    };
  },
});
`;

/** Runs `cmd` to completion: its stdout, or it throws with its stderr. */
async function succeeds(cmd: string, args: string[]): Promise<string> {
  const { code, stdout, stderr } = await runProcess(cmd, args);
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${code}:\n${stderr}`);
  return stdout;
}

/** The lines every tour prints, whatever its language. */
function expectTour(stdout: string, language: string): void {
  const lines = stdout.trimEnd().split("\n");
  expect(lines[0]).toBe(`execute: [history=0] hello from ${language}`);
  expect(lines[1]).toBe('stream: started; first delta "[history=0] "; cancelled -> CANCELLED');
  expect(lines[2]).toMatch(/^session: created [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  expect(lines.slice(3)).toEqual([
    "session: turn 1 -> [history=0] my name is Ada",
    "session: turn 2 -> [history=2] what is my name?",
    "session: GetSession has 4 messages: user, assistant, user, assistant",
    "error: GetSession(unknown id) -> NOT_FOUND reason=SESSION_NOT_FOUND",
    "error: Execute(empty task) -> INVALID_ARGUMENT reason=INVALID_FIELD (task: must not be empty)",
    "done",
  ]);
}

describe("the client examples against the server", () => {
  let server: ServerProcess;
  let cancels = 0;
  beforeAll(async () => {
    const dir = tempDir("qingyu-clients-");
    writeFiles(dir, { "plugins/hold.mjs": holdProvider });
    server = await startServer({
      log: { level: "warn" },
      providers: { hold: { plugin: "hold" } },
      agents: [{ id: "echo", provider: "hold", model: "echo-1" }],
      plugins: { dirs: [join(dir, "plugins")] },
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** Checks a tour's output, and that its cancel reached the server's provider. */
  async function tour(language: string, run: Promise<string>): Promise<void> {
    expectTour(await run, language);
    cancels++;
    await waitFor("the server to see the stream's cancel", () => (logged(server, "hold: the client cancelled").length >= cancels ? true : undefined));
  }

  // The run's globalSetup has checked for python3-grpcio and python3-protobuf: this always runs.
  it("Python (grpcio, clients/python)", async () => {
    await tour("python", runPython([join(root, "examples/python/tour.py"), `127.0.0.1:${server.grpcPort}`], join(root, "clients/python")));
  });

  it("TypeScript over gRPC (@qingyu/client, connect-node)", async () => {
    await tour("typescript", succeeds(process.execPath, ["--import", "tsx", join(root, "examples/typescript/tour.ts"), `127.0.0.1:${server.grpcPort}`]));
  });

  it("TypeScript over Connect on the HTTP port (@qingyu/client, connect-web: what a browser runs)", async () => {
    await tour("typescript", succeeds(process.execPath, ["--import", "tsx", join(root, "examples/typescript/tour.ts"), `http://127.0.0.1:${server.httpPort}`]));
  });

  // Debian's Go modules are GOPATH sources (no module proxy here): build in GOPATH mode, the repository linked in.
  it.skipIf(!hasGo)("Go (grpc-go, clients/go)", { timeout: 300_000 }, async () => {
    const gopath = tempDir("qingyu-gopath-");
    mkdirSync(join(gopath, "src/github.com/qingyu"), { recursive: true });
    symlinkSync(root, join(gopath, "src/github.com/qingyu/agent-runtime"), "dir");
    const goEnv = { GO111MODULE: "off", GOPATH: `${gopath}:${gocode}`, GOFLAGS: "" };
    const built = await runProcess("go", ["build", "-o", join(gopath, "tour"), "github.com/qingyu/agent-runtime/examples/go"], goEnv);
    expect(built).toEqual({ code: 0, stdout: "", stderr: "" });
    await tour("go", succeeds(join(gopath, "tour"), [`127.0.0.1:${server.grpcPort}`]));
  });
});

/** Every file under `dir` (relative paths) that `generated` says a generator wrote. */
function generatedFiles(dir: string, generated: (path: string) => boolean): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .filter(generated)
    .sort();
}

describe("the committed client code is what `npm run generate:clients` makes from proto/", () => {
  const check = async (template: string, out: string, generated: (path: string) => boolean): Promise<void> => {
    const fresh = tempDir("qingyu-clients-gen-");
    const run = await runProcess(join(bin, "buf"), ["generate", "--template", template, "-o", fresh], { PATH: `${bin}:${process.env.PATH}` });
    expect(run).toMatchObject({ code: 0, stderr: "" });
    const want = generatedFiles(join(fresh, out), generated);
    expect(want.length).toBeGreaterThan(0);
    // Same files (none missing, none left over from a removed proto), same bytes.
    expect(generatedFiles(join(root, out), generated)).toEqual(want);
    for (const file of want) {
      expect(readFileSync(join(root, out, file), "utf8"), `${out}/${file}: run npm run generate:clients`).toBe(readFileSync(join(fresh, out, file), "utf8"));
    }
  };

  it("TypeScript (packages/client/src/gen)", async () => {
    await check("buf.gen.ts-client.yaml", "packages/client/src/gen", () => true);
  });

  it.skipIf(!found("protoc") || !found("grpc_python_plugin"))("Python (clients/python)", async () => {
    await check("buf.gen.python.yaml", "clients/python", (path) => /_pb2(_grpc)?\.pyi?$/.test(path));
  });

  it.skipIf(!found("protoc-gen-go") || !found("protoc-gen-go-grpc"))("Go (clients/go)", async () => {
    await check("buf.gen.go.yaml", "clients/go", (path) => path.endsWith(".pb.go"));
  });

  it("@qingyu/client imports nothing but protobuf-es and connect-es (it does not pull in the server)", () => {
    const src = join(root, "packages/client/src");
    const imports = generatedFiles(src, (path) => path.endsWith(".ts")).flatMap((file) =>
      [...readFileSync(join(src, file), "utf8").matchAll(/^(?:import|export)[^"']*from\s+["']([^"']+)["']/gm)].map((m) => m[1]!),
    );
    // A bare specifier's package: "@scope/name" or "name", without a subpath.
    const packages = new Set(
      imports
        .filter((spec) => !spec.startsWith("."))
        .map((spec) =>
          spec
            .split("/")
            .slice(0, spec.startsWith("@") ? 2 : 1)
            .join("/"),
        ),
    );
    const { dependencies } = JSON.parse(readFileSync(join(root, "packages/client/package.json"), "utf8")) as { dependencies: Record<string, string> };
    expect([...packages].sort()).toEqual(["@bufbuild/protobuf", "@connectrpc/connect"]);
    expect(Object.keys(dependencies).sort()).toEqual(["@bufbuild/protobuf", "@connectrpc/connect"]);
  });
});
