// The client of the idle-streams phase (bench/idle-streams.ts), in a process of
// its own so that holding 10,000 calls costs the bench's own event loop and heap
// nothing. Usage: idle-client.ts <port> <streams> <connections>.
//
// Talks to the bench in JSON lines: prints {"ready"} once every connection is up
// (each has carried one call), then on "open" from stdin opens <streams> idle
// ExecuteStream calls spread evenly over the connections and prints {"open"}
// once every one of them has received its first message (Started), so all are
// really running on the server; on "close" it cancels them all and prints
// {"closed"}, then exits. Any call that fails or ends while it should be open is
// reported as {"error"} and the process exits 1.
import type * as grpc from "@grpc/grpc-js";
import { createInterface } from "node:readline";
import { client, openStream } from "./grpc-client.ts";
import type { ExecuteStreamResponse } from "../src/gen/qingyu/agent/v1/agent_pb.ts";

const [port, total, connections] = process.argv.slice(2).map(Number) as [number, number, number];
const say = (message: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(message)}\n`);
function fail(message: string): never {
  say({ error: message });
  process.exit(1);
}
if (!(port > 0 && total > 0 && connections > 0)) fail("usage: idle-client.ts <port> <streams> <connections>");

// A subchannel pool per channel: otherwise grpc-js shares one connection between channels to the same address.
const channels = Array.from({ length: connections }, () => client(port, { "grpc.use_local_subchannel_pool": 1 }));
const open: grpc.ClientReadableStream<ExecuteStreamResponse>[] = [];
let closing = false;

/** Opens one idle call; resolves once Started arrived. After that, an error or end before "close" is fatal. */
function openIdle(c: grpc.Client): Promise<grpc.ClientReadableStream<ExecuteStreamResponse>> {
  return new Promise((res, rej) => {
    const call = openStream(c, "idle", "wait");
    let started = false;
    call.on("data", (msg: ExecuteStreamResponse) => {
      if (started) return; // an idle call sends nothing more while the bench measures
      if (msg.event.case !== "started") return rej(new Error(`first message was ${msg.event.case}, not started`));
      started = true;
      res(call);
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (!started) rej(err);
      else if (!closing) fail(`an open call failed: ${err.message}`);
    });
    call.on("end", () => {
      if (!started) rej(new Error("ended before Started"));
      else if (!closing) fail("an open call ended");
    });
  });
}

async function warmUp(): Promise<void> {
  const calls = await Promise.all(channels.map(openIdle));
  closing = true;
  for (const call of calls) call.cancel();
  await new Promise((r) => setTimeout(r, 200));
  closing = false;
}

async function openAll(): Promise<void> {
  const t0 = performance.now();
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) pending.push(openIdle(channels[i % connections]!).then((call) => open.push(call)));
  await Promise.all(pending);
  say({ open: open.length, seconds: (performance.now() - t0) / 1000 });
}

function closeAll(): void {
  closing = true;
  for (const call of open) call.cancel();
  for (const c of channels) c.close();
  say({ closed: open.length });
  setTimeout(() => process.exit(0), 200); // let the RST_STREAM frames go out
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line === "open") openAll().catch((err: Error) => fail(`opening: ${err.message}`));
  else if (line === "close") closeAll();
});
lines.on("close", () => process.exit(0)); // the bench went away
warmUp().then(
  () => say({ ready: connections }),
  (err: Error) => fail(`warm-up: ${err.message}`),
);
