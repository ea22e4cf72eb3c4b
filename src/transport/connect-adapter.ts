import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";
import { Code, ConnectError } from "../errors.ts";
import type { CallTracker, TrackOptions } from "./call-tracker.ts";
import { deadlineExceeded, endedEarly } from "./cancel-reason.ts";
import { edgeError } from "./edge-error.ts";
import type { CallContext, HostedService } from "./types.ts";

/**
 * Registers services on a connect-node router (Connect JSON/binary, gRPC-Web,
 * gRPC), adapting its HandlerContext to our CallContext.
 */
export function registerConnectServices(router: ConnectRouter, services: readonly HostedService[], tracker: CallTracker, log: Logger): void {
  for (const { service, impl, track } of services) {
    const adapted: Record<string, unknown> = {};
    for (const method of service.methods) {
      const fn = impl[method.localName]!;
      const fail = (err: unknown): never => {
        throw edgeError(err, method, log);
      };
      adapted[method.localName] =
        method.methodKind === "server_streaming"
          ? async function* (req: never, hctx: HandlerContext) {
              const { ctx, end } = begin(hctx, tracker, track);
              try {
                yield* fn(req, ctx) as AsyncIterable<unknown>;
              } catch (err) {
                fail(err);
              } finally {
                end();
              }
            }
          : async (req: never, hctx: HandlerContext) => {
              const { ctx, end } = begin(hctx, tracker, { ...track, longLived: false });
              try {
                return await (fn(req, ctx) as Promise<unknown>);
              } catch (err) {
                return fail(err);
              } finally {
                end();
              }
            };
    }
    router.service(service, adapted as never);
  }
}

function begin(hctx: HandlerContext, tracker: CallTracker, track: TrackOptions) {
  const controller = new AbortController();
  const end = tracker.begin(controller, track);
  const remaining = hctx.timeoutMs();
  const deadline = remaining === undefined ? undefined : Date.now() + remaining;
  // connect-node also aborts its signal when a call completes normally; by then nobody listens.
  const onAbort = () => {
    const reason = ConnectError.from(hctx.signal.reason);
    controller.abort(reason.code === Code.DeadlineExceeded ? deadlineExceeded() : endedEarly(deadline));
  };
  hctx.signal.addEventListener("abort", onAbort, { once: true });
  const ctx: CallContext = {
    signal: controller.signal,
    deadline,
    peer: "",
    header: (name) => hctx.requestHeader.get(name) ?? undefined,
    setTrailer: (name, value) => hctx.responseTrailer.set(name, value),
  };
  return {
    ctx,
    end: () => {
      hctx.signal.removeEventListener("abort", onAbort);
      end();
    },
  };
}
