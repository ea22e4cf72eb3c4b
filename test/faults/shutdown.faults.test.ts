// SIGTERM with 50 streams in flight. lifecycle.e2e drains one stream (and checks health
// watches, subscriptions and the grace-period cut-off); this is the same promise under load,
// on both ports.
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer } from "../support/server-process.ts";
import { connectCall, crashLines } from "./support.ts";

const A = AgentService.method;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STREAMS = 50;
const TASK = "one two three four five six seven eight";

describe("SIGTERM under load", () => {
  it(`with ${STREAMS} streams in flight: NOT_SERVING and UNAVAILABLE at once, every stream finishes, exit 0`, async () => {
    const server = await startServer({
      log: { level: "warn" },
      server: { shutdownGraceMs: 10_000 },
      providers: { slow: { plugin: "echo", options: { tokenDelayMs: 50 } } },
      agents: [{ id: "slow", provider: "slow", model: "m" }],
      plugins: { dirs: [] },
    });
    const client = new TestClient(server.grpcPort);
    try {
      const seen = Array.from({ length: STREAMS }, () => [] as string[]);
      const finished = seen.map((events, i) => {
        const call = client.stream(AgentService, A.executeStream, { agentId: "slow", task: `${i} ${TASK}` }, { timeoutMs: 30_000 });
        call.on("data", (m) => events.push(m.event.case === "delta" ? "delta" : (m.event.case ?? "")));
        return client.collect(call).then(
          () => "ok",
          (err: grpc.ServiceError) => grpc.status[err.code],
        );
      });
      // Every stream has its first token: all 50 are mid-answer.
      while (!seen.every((events) => events.includes("delta"))) await sleep(5);
      const signalled = Date.now();
      server.child.kill("SIGTERM");
      await sleep(50);

      const [health, refused, httpHealth, httpRefused] = await Promise.all([
        client.unary(Health, Health.method.check, {}),
        statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task: "late" })),
        connectCall(server.httpPort, "grpc.health.v1.Health/Check", "{}"),
        connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", '{"agentId":"slow","task":"late"}'),
      ]);
      expect(health.status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      expect(grpc.status[refused.code]).toBe("UNAVAILABLE");
      expect(httpHealth.json).toEqual({ status: "NOT_SERVING" });
      expect([httpRefused.status, httpRefused.json?.code]).toEqual([503, "unavailable"]);
      // Checked while the streams were still running: the answers above came during the drain.
      expect(seen.filter((events) => events.at(-1) === "completed").length).toBeLessThan(STREAMS);

      expect(await Promise.all(finished)).toEqual(Array(STREAMS).fill("ok"));
      for (const events of seen) {
        expect(events.filter((e) => e === "delta")).toHaveLength(10); // "[history=0]", the index, eight words
        expect(events.at(-1)).toBe("completed");
      }
      expect(await server.exited).toBe(0);
      // Well inside the grace period: the server left as soon as the last stream ended.
      expect(Date.now() - signalled).toBeLessThan(5000);
      expect(crashLines(server)).toEqual([]);
    } finally {
      client.close();
      await server.stop("SIGKILL");
    }
  });
});
