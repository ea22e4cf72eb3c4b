// Before bench/openai-real.ts measures anything: every form of call answers in
// full, and how many DATA bytes a whole gRPC answer has — h2load counts any
// HTTP 200 as a success, and a gRPC error is an HTTP 200 with no DATA.
import { create, toBinary } from "@bufbuild/protobuf";
import { ExecuteRequestSchema, ExecuteResponseSchema, ExecuteStreamResponseSchema, type ExecuteStreamResponse } from "../src/gen/qingyu/agent/v1/agent_pb.ts";
import { client, execute, openStream } from "./grpc-client.ts";
import type { LightClient } from "./openai-real-client.ts";
import { AGENTS, connectStream, connectUnary, direct, grpcStream, sse, task, type Endpoints } from "./openai-real-targets.ts";

/** Per answer size, the fewest DATA bytes a whole gRPC answer may have (90% of one measured). */
export type MinBytes = Record<number, { unary: number; stream: number }>;

export async function referenceBytes(e: Endpoints, light: LightClient, tokens: readonly number[], streamTokens: number): Promise<MinBytes> {
  // The HTTP port may open a moment after the gRPC port that startOurs waited for.
  for (let attempt = 1; ; attempt++) {
    const targets = tokens.flatMap((t) =>
      [direct(e, t, false), direct(e, t, true), connectUnary(e, t), connectStream(e, t), sse(e, t), grpcStream(e, t)].map((x) => ({
        ...x,
        name: `${x.kind} ${t}`,
      })),
    );
    const paced = [direct(e, streamTokens, true, AGENTS.paced), connectStream(e, streamTokens, AGENTS.paced)].map((x) => ({ ...x, name: `paced ${x.kind}` }));
    const r = await light.alternate({ targets: [...targets, ...paced], seconds: 60, warmupCalls: 0, maxRounds: 1, stamps: false });
    const failed = Object.entries(r.byTarget).filter(([, v]) => v.errors);
    if (!failed.length) break;
    if (attempt === 20) throw new Error(`calls failed before the bench: ${failed.map(([k, v]) => `${k}: ${v.firstError}`).join("; ")}`);
    await new Promise((res) => setTimeout(res, 250));
  }
  const c = client(e.grpcPort);
  try {
    const out: MinBytes = {};
    for (const t of tokens) {
      const res = await execute(c, create(ExecuteRequestSchema, { agentId: AGENTS.fast.id, task: task(t) }));
      if (!res.result?.success || res.result.output !== task(t))
        throw new Error(`Execute through the openai agent answered ${JSON.stringify(res.result?.output)}`);
      const messages = await new Promise<ExecuteStreamResponse[]>((resolve, reject) => {
        const got: ExecuteStreamResponse[] = [];
        const call = openStream(c, AGENTS.fast.id, task(t));
        call.on("data", (m: ExecuteStreamResponse) => got.push(m));
        call.on("error", reject);
        call.on("end", () => resolve(got));
      });
      const streamed = messages.reduce((n, m) => n + 5 + toBinary(ExecuteStreamResponseSchema, m).length, 0);
      if (messages.filter((m) => m.event.case === "delta").length < t) throw new Error(`ExecuteStream sent fewer than ${t} deltas`);
      out[t] = { unary: Math.floor(0.9 * (5 + toBinary(ExecuteResponseSchema, res).length)), stream: Math.floor(0.9 * streamed) };
    }
    return out;
  } finally {
    c.close();
  }
}
