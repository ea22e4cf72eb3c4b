// The four things a backend does with Qingyu Agent Runtime, from TypeScript with
// @qingyu/client (packages/client: protobuf-es messages + connect-es clients):
//
//   node --import tsx examples/typescript/tour.ts 127.0.0.1:50051        # gRPC port, @connectrpc/connect-node
//   node --import tsx examples/typescript/tour.ts http://127.0.0.1:8080  # HTTP port, @connectrpc/connect-web (fetch, as in a browser)
//
// It needs the `echo` agent, as config/example.yaml has. It prints one line per
// step and exits non-zero when the server answers something other than expected.
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createConnectTransport } from "@connectrpc/connect-web";
import { createQingyuClient, type QingyuClient } from "@qingyu/client";

// Every call gets a deadline.
const timeoutMs = 10_000;

/** A transport for `target`, and how to close its connection when the script is done. */
function transportFor(target: string): { transport: Transport; close: () => void } {
  // The browser transport runs on any fetch: Node's here, a browser's in a web app.
  if (/^https?:\/\//.test(target)) return { transport: createConnectTransport({ baseUrl: target }), close: () => {} };
  // A session manager of our own, to close the HTTP/2 connection at the end: connect-node keeps it
  // open (and the process alive) while a stream cancelled after the server had finished is unread.
  const sessionManager = new Http2SessionManager(`http://${target}`);
  return { transport: createGrpcTransport({ baseUrl: `http://${target}`, sessionManager }), close: () => sessionManager.abort() };
}

/** gRPC's name for a code (NOT_FOUND), which connect-es spells NotFound. */
function codeName(code: Code): string {
  return Code[code]
    .replace(/([a-z])([A-Z])/g, "$1_$2")
    .toUpperCase()
    .replace(/^CANCELED$/, "CANCELLED");
}

function fail(message: string): never {
  throw new Error(message);
}

async function execute({ agents }: QingyuClient): Promise<void> {
  const reply = await agents.execute({ agentId: "echo", task: "hello from typescript" }, { timeoutMs });
  console.log(`execute: ${reply.result?.output}`);
}

async function streamThenCancel({ agents }: QingyuClient): Promise<void> {
  const abort = new AbortController();
  const kinds: string[] = [];
  let first: string | undefined;
  let outcome = "OK (the server had finished first)";
  try {
    for await (const event of agents.executeStream({ agentId: "echo", task: "a long answer we stop early" }, { timeoutMs, signal: abort.signal })) {
      kinds.push(event.event.case ?? "?");
      if (event.event.case === "delta" && first === undefined) {
        first = event.event.value.text;
        // Aborting tells the server, which stops the model: no tokens for a caller who left.
        abort.abort();
      }
    }
  } catch (err) {
    const code = ConnectError.from(err).code;
    if (code !== Code.Canceled) throw err;
    outcome = codeName(code);
  }
  console.log(`stream: ${kinds[0]}; first delta "${first}"; cancelled -> ${outcome}`);
}

async function twoTurns({ agents, sessions }: QingyuClient): Promise<void> {
  const { session } = await sessions.createSession({ userId: "ts-user", agentId: "echo" }, { timeoutMs });
  const sessionId = session?.sessionId ?? fail("CreateSession returned no session");
  console.log(`session: created ${sessionId}`);
  for (const [i, task] of ["my name is Ada", "what is my name?"].entries()) {
    // No agentId: the session's agent answers, with the session's history in the prompt.
    const reply = await agents.execute({ sessionId, userId: "ts-user", task }, { timeoutMs });
    console.log(`session: turn ${i + 1} -> ${reply.result?.output}`);
  }
  const messages = (await sessions.getSession({ sessionId, userId: "ts-user" }, { timeoutMs })).session?.messages ?? [];
  console.log(`session: GetSession has ${messages.length} messages: ${messages.map((m) => m.role).join(", ")}`);
  if (messages.length !== 4) fail(`expected 4 messages, got ${messages.length}`);
}

/** Runs `call`, which must fail with `want`; returns the error. */
async function expectError(call: () => Promise<unknown>, want: Code): Promise<ConnectError> {
  try {
    await call();
  } catch (err) {
    const error = ConnectError.from(err);
    if (error.code !== want) throw err;
    return error;
  }
  return fail(`expected ${codeName(want)}, the call succeeded`);
}

async function errorCodes({ agents, sessions }: QingyuClient): Promise<void> {
  // The machine-readable reason: the `qingyu-reason` trailer (a response header on a Connect unary call);
  // connect-es gathers both into err.metadata. It is also a google.rpc.ErrorInfo in err.details.
  const missing = await expectError(() => sessions.getSession({ sessionId: "00000000-0000-4000-8000-000000000000" }, { timeoutMs }), Code.NotFound);
  console.log(`error: GetSession(unknown id) -> ${codeName(missing.code)} reason=${missing.metadata.get("qingyu-reason")}`);
  const invalid = await expectError(() => agents.execute({ agentId: "echo", task: "" }, { timeoutMs }), Code.InvalidArgument);
  console.log(`error: Execute(empty task) -> ${codeName(invalid.code)} reason=${invalid.metadata.get("qingyu-reason")} (${invalid.rawMessage})`);
}

const { transport, close } = transportFor(process.argv[2] ?? "127.0.0.1:50051");
const client = createQingyuClient(transport);
try {
  await execute(client);
  await streamThenCancel(client);
  await twoTurns(client);
  await errorCodes(client);
  console.log("done");
} finally {
  close();
}
