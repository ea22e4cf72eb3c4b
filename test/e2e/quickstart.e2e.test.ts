// The README's quick start, as a new user runs it: the repository's files copied to a
// fresh folder, then the README's own lines, read from README.md at run time — the
// install and `npm start`, the curl examples (Connect JSON, a conversation, Connect
// stream frames, Server-Sent Events), the Python snippet and `qingyu check`. The only
// change made to a line is the ports: the server gets free ones. When a README line
// stops working, this fails naming it (README.md:LINE).
import type { ChildProcess } from "node:child_process";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { READY_WITHIN_MS } from "../support/limits.ts";
import { type FencedBlock, markdownSections, sectionTitled } from "../support/markdown-sections.ts";
import { signalGroup } from "../support/process-groups.ts";
import { runProcess, runtime, spawnTracked } from "../support/server-process.ts";
import { parseEventStream } from "../support/sse-client.ts";
import { tempDir } from "../support/temp-dirs.ts";

const root = resolve(import.meta.dirname, "../..");
const readmeText = readFileSync(join(root, "README.md"), "utf8");
const readme = markdownSections(readmeText);
/** A bound on a hang: `npm install` of the whole tree (a Deno binary among it) on a busy 2-core machine. */
const INSTALL_WITHIN_MS = 900_000;

/** Why this run does not do the quick start, or undefined when it does. */
function skipReason(): string | undefined {
  // A user's quick start runs on the machine's Node and npm: once per CI run (npm test) is enough.
  if (runtime === "deno") return "the quick start runs on Node with npm (npm test), not under QINGYU_E2E_RUNTIME=deno";
  if (process.env.QINGYU_E2E_NODE) return `the quick start runs on the machine's Node (npm test), not on Node ${process.env.QINGYU_E2E_NODE}`;
  const top = spawnSync("git", ["-C", root, "rev-parse", "--show-toplevel"], { encoding: "utf8" });
  if (top.status !== 0 || realpathSync(top.stdout.trim()) !== realpathSync(root)) return `${root} is not a git checkout: nothing says which files a clone has`;
  return undefined;
}

/**
 * The shell a user types in: none of what `npm test` and vitest put in the environment
 * (npm_* settings, node_modules/.bin on PATH, NODE_ENV), nor the server's own variables,
 * so the README's defaults are what runs.
 */
function userEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const key of Object.keys(process.env)) {
    if (/^(npm_|INIT_CWD$|NODE_ENV$|NODE_OPTIONS$|VITEST|TEST$|QINGYU_|HOST$|PORT$|HTTP_PORT$|LOG_|OPENAI_|OTEL_|PYTHONPATH$)/.test(key)) env[key] = undefined;
  }
  env.PATH = (process.env.PATH ?? "")
    .split(":")
    .filter((dir) => !/node_modules[/\\]\.bin$|node-gyp-bin$/.test(dir))
    .join(":");
  return env;
}

/** Copies what a clone of the repository has (tracked files, and new ones git does not ignore) into `dir`. */
function copyRepository(dir: string): void {
  const listed = spawnSync("git", ["-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  for (const file of listed.stdout.split("\0").filter(Boolean)) {
    const from = join(root, file);
    if (!existsSync(from) || !statSync(from).isFile()) continue; // deleted in the work tree, or a submodule
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(from, join(dir, file));
  }
}

/** One command of a README block (a line, with its continuation lines), and the comment lines right after it: the output the README shows. */
interface ReadmeCommand {
  where: string;
  text: string;
  shown: string[];
}

function shellCommands(block: FencedBlock): ReadmeCommand[] {
  const commands: ReadmeCommand[] = [];
  let last: ReadmeCommand | undefined;
  let continued = false;
  for (const [i, line] of block.code.split("\n").entries()) {
    // A comment right after a command shows its output; after a blank line it introduces what follows.
    if (continued) last!.text += `\n${line}`;
    else if (line.trim() === "") last = undefined;
    else if (/^\s*#/.test(line)) last?.shown.push(line.replace(/^\s*# ?/, ""));
    else commands.push((last = { where: `README.md:${block.line + i}`, text: line, shown: [] }));
    continued = /(\\|\||&&)\s*$/.test(line);
  }
  return commands;
}

/** The README's ports (localhost:8080, 127.0.0.1:50051) as the test server's. */
function withPorts(text: string, ports: Ports): string {
  return text.replace(
    /\b(localhost|127\.0\.0\.1):(8080|50051)\b/g,
    (_, host: string, port: string) => `${host}:${port === "8080" ? ports.httpPort : ports.grpcPort}`,
  );
}

/** A command's output as JSON, or an error naming its README line. */
function json(ran: Ran): { result?: { output?: string }; session?: { userId?: string; messages?: { role: string; content: string }[] } } {
  try {
    return JSON.parse(ran.output);
  } catch {
    throw new Error(`${ran.where}: expected JSON from\n${ran.text}\n--- got ---\n${ran.output}`);
  }
}

/** An answer without its durationMs, which each run measures anew (and protobuf JSON leaves out when it is 0). */
function timeless(json: string): unknown {
  return JSON.parse(json.replace(/,"durationMs":"\d+"/, ""));
}

/** A README command and what it printed. */
interface Ran extends ReadmeCommand {
  output: string;
}

interface Ports {
  grpcPort: number;
  httpPort: number;
}

const skipped = skipReason();
describe.skipIf(skipped !== undefined)(`the README's quick start, in a copy of the repository${skipped ? ` (skipped: ${skipped})` : ""}`, () => {
  const env = userEnv();
  let copy: string;
  let server: ChildProcess;
  let ports: Ports;
  let serverOutput = "";

  /**
   * Runs a README block in one `sh -e` in the copy, as if pasted into a shell (its variables carry
   * from command to command), the ports made the server's: each command's output, or an error naming
   * the README line that failed. A marker printed before each command tells their outputs apart.
   */
  async function shell(block: FencedBlock): Promise<Ran[]> {
    const commands = shellCommands(block);
    const script = ["set -e", ...commands.flatMap((command, i) => [`printf '\\n@@quickstart %d\\n' ${i}`, withPorts(command.text, ports)])].join("\n");
    const { code, stdout, stderr } = await runProcess("sh", ["-c", script], env, { cwd: copy });
    const parts = stdout.split(/\n@@quickstart (\d+)\n/);
    const ran = commands.map((command, i) => ({ ...command, output: parts[parts.indexOf(String(i)) + 1] ?? "" }));
    if (code !== 0) {
      const failed = ran[Number(parts.at(-2) ?? 0)]!; // the last marker printed
      throw new Error(`${failed.where}: exited with ${code}:\n${failed.text}\n--- its output ---\n${failed.output}\n--- stderr ---\n${stderr}`);
    }
    return ran;
  }

  beforeAll(async () => {
    copy = tempDir("qingyu-quickstart-");
    copyRepository(copy);
    // "Run and test": `npm install && npm start`. The install runs to its end; npm start then serves (the README's
    // `npm start -- --port N --http-port M`, on free ports). The block's `npm test` is this suite.
    const block = sectionTitled(readme, "Run and test").blocks.find((b) => b.lang === "sh")!;
    const first = block.code.split("\n")[0]!;
    const where = `README.md:${block.line}`;
    const steps = first
      .replace(/\s+#.*$/, "")
      .split("&&")
      .map((s) => s.trim());
    if (steps.at(-1) !== "npm start" || steps.length < 2) throw new Error(`${where}: expected "<install> && npm start", found: ${first}`);
    const install = steps.slice(0, -1).join(" && ");
    const installed = await runProcess("sh", ["-c", install], env, { cwd: copy });
    if (installed.code !== 0) throw new Error(`${where}: \`${install}\` exited with ${installed.code}:\n${installed.stderr.slice(-4000)}`);

    server = spawnTracked("sh", ["-c", `${steps.at(-1)} -- --port 0 --http-port 0`], {
      cwd: copy,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    server.stderr!.on("data", (d) => (serverOutput += d));
    ports = await new Promise<Ports>((res, rej) => {
      createInterface({ input: server.stdout! }).on("line", (line) => {
        serverOutput += `${line}\n`;
        let entry: { msg?: string; host?: string } & Ports;
        try {
          entry = JSON.parse(line);
        } catch {
          return; // npm's "> qingyu-agent-runtime@... start" lines
        }
        if (entry.msg !== "listening") return;
        if (entry.host !== "127.0.0.1") rej(new Error(`${where}: npm start listens on ${entry.host}, not on 127.0.0.1 only as the README says`));
        res({ grpcPort: entry.grpcPort, httpPort: entry.httpPort });
      });
      server.once("exit", (code) => rej(new Error(`${where}: npm start exited (${code}) before listening:\n${serverOutput}`)));
      setTimeout(
        () => rej(new Error(`${where}: npm start did not say "listening" within ${READY_WITHIN_MS / 1000} s:\n${serverOutput}`)),
        READY_WITHIN_MS,
      ).unref();
    });
  }, INSTALL_WITHIN_MS);

  afterAll(async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((res) => server.once("exit", res));
      signalGroup(server.pid, "SIGTERM"); // npm and the server it runs
      await exited;
    }
    if (copy) rmSync(copy, { recursive: true, force: true });
  });

  it("curl (Connect JSON on the HTTP port): Execute answers as shown, and a conversation's turn is in its session", async () => {
    const block = sectionTitled(readme, "curl (Connect JSON on the HTTP port)").blocks.find((b) => b.lang === "sh")!;
    const [execute, sid, turn, get, ...more] = await shell(block);
    expect(more).toEqual([]);
    expect(timeless(execute!.output), execute!.where).toEqual(timeless(execute!.shown[0]!));
    expect(sid!.text, sid!.where).toMatch(/^SID=/);
    expect(json(turn!).result?.output, turn!.where).toBe("[history=0] first");
    const { session } = json(get!);
    expect(session?.userId, get!.where).toBe("alice");
    expect(
      session?.messages?.map((m) => [m.role, m.content]),
      get!.where,
    ).toEqual([
      ["user", "first"],
      ["assistant", "[history=0] first"],
    ]);
  });

  it("Streaming over HTTP: the Connect stream's frames, then the SSE POST and the EventSource GET", async () => {
    const [frames, sse] = sectionTitled(readme, "Streaming over HTTP: curl and Server-Sent Events").blocks.filter((b) => b.lang === "sh");
    const [envelope, framesFn, connect, ...moreFrames] = await shell(frames!);
    expect([envelope!.text, framesFn!.text, moreFrames]).toEqual([expect.stringMatching(/^envelope\(\)/), expect.stringMatching(/^frames\(\)/), []]);
    const lines = connect!.output.trim().split("\n");
    expect(lines.slice(0, 2), connect!.where).toEqual(connect!.shown.slice(0, 2));
    expect(JSON.parse(lines.at(-2)!).completed.output, connect!.where).toBe("[history=0] stream this please");
    expect(lines.at(-1), connect!.where).toBe("{}"); // Connect's end of stream: no error

    const [post, get, ...moreSse] = await shell(sse!);
    expect(moreSse).toEqual([]);
    expect(get!.text).toContain("-G");
    for (const ran of [post!, get!]) {
      const { events, rest } = parseEventStream(ran.output);
      expect(rest, ran.where).toBe("");
      const names = events.map((e) => e.event);
      expect(names[0], ran.where).toBe("started");
      expect(names.length > 2 && names.slice(1, -1).every((name) => name === "delta"), `${ran.where}: ${names.join(", ")}`).toBe(true);
      expect(names.at(-1), ran.where).toBe("completed");
      expect(JSON.parse(events.at(-1)!.data).completed.output, ran.where).toBe("[history=0] stream this please");
    }
  });

  it("Python: the snippet, saved as the README says, prints what its comments say; then the tour runs", async () => {
    const section = sectionTitled(readme, "Python", "Clients: Python, Go, TypeScript");
    const snippet = section.blocks.find((b) => b.lang === "python")!;
    const file = /Save this as `([^`]+)`/.exec(snippet.before)?.[1];
    expect(file, `README.md:${snippet.line}: the prose before the snippet names its file`).toBeDefined();
    writeFileSync(join(copy, file!), withPorts(snippet.code, ports));
    const promised = [...snippet.code.matchAll(/print\(.*\)\s*#\s*(.+)$/gm)].map((m) => m[1]!.trim());
    expect(promised).toEqual(["[history=0] hello from python", "NOT_FOUND AGENT_NOT_FOUND"]);

    const [hello, tour, ...more] = await shell(section.blocks.find((b) => b.lang === "sh")!);
    expect(more).toEqual([]);
    expect(hello!.output.trim().split("\n"), `${hello!.where} (${file}, README.md:${snippet.line})`).toEqual(promised);
    const lines = tour!.output.trim().split("\n");
    expect(lines[0], tour!.where).toBe("execute: [history=0] hello from python");
    expect(lines.at(-1), tour!.where).toBe("done");
  });

  it("Command line: `qingyu check` (as the README's table runs the CLI: npx qingyu) says ok", async () => {
    const section = sectionTitled(readme, "Command line");
    const row = /`(qingyu check[^`]*)`/.exec(section.prose)?.[1];
    expect(row, `README.md:${section.line}: a row for qingyu check`).toBeDefined();
    const where = `README.md:${readmeText.split("\n").findIndex((line, i) => i >= section.line && line.includes(`\`${row}\``)) + 1}`;
    // Square brackets mark what is optional: `qingyu check [--config FILE]` is run as `qingyu check`.
    const command = `npx ${row!.replace(/\s*\[[^\]]*\]/g, "")}`;
    const { code, stdout, stderr } = await runProcess("sh", ["-c", command], env, { cwd: copy });
    expect({ code, stderr: code === 0 ? "" : stderr }, `${where}: ${command}`).toEqual({ code: 0, stderr: "" });
    expect(stdout, `${where}: ${command}`).toMatch(/: ok \(/);
  });
});
