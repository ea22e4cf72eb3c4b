import { Code, ConnectError } from "@qingyu/plugin-api";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { CallTracker, TrackOptions } from "./call-tracker.ts";
import { deadlineExceeded, endedEarly } from "./cancel-reason.ts";
import type { ErrorEdge } from "./edge-error.ts";
import { untilAborted } from "../abort.ts";
import { callDeadline, metadataTooLarge, type CallLimits } from "./limits.ts";
import { preflightCall } from "./preflight.ts";
import type { CallContext, HostedService } from "./types.ts";
import { resetConnectWhenStalled } from "./stalled-stream.ts";

/**
 * Registers services on a connect-node router (Connect JSON/binary, gRPC-Web,
 * gRPC), adapting its HandlerContext to our CallContext.
 */
export function registerConnectServices(
  router: ConnectRouter,
  services: readonly HostedService[],
  tracker: CallTracker,
  edge: ErrorEdge,
  limits: CallLimits,
): void {
  for (const { service, impl, track } of services) {
    const adapted: Record<string, unknown> = {};
    for (const method of service.methods) {
      const fn = impl[method.localName]!;
      const fail = (err: unknown): never => {
        throw edge.toClient(err, method);
      };
      if (method.methodKind === "client_streaming") throw new Error(`${method.methodKind} methods are not supported`);
      // A bidi method's first argument is its request stream, handed on as a request is.
      adapted[method.localName] =
        method.methodKind !== "unary"
          ? async function* (req: never, hctx: HandlerContext) {
              // A refusal by beginCall() (draining, metadata too large) leaves through the edge too.
              let call: ReturnType<typeof beginCall> | undefined;
              let disarm: (() => void) | undefined;
              try {
                call = beginCall(hctx, tracker, track, limits);
                // Ended while connect-node waits to write to a client that does not read, this generator is never resumed.
                disarm = resetConnectWhenStalled(hctx, call.ctx.signal, call.end);
                yield* fn(req, call.ctx) as AsyncIterable<unknown>;
              } catch (err) {
                fail(err);
              } finally {
                disarm?.();
                call?.end();
              }
            }
          : async (req: never, hctx: HandlerContext) => {
              let call: ReturnType<typeof beginCall> | undefined;
              try {
                call = beginCall(hctx, tracker, { ...track, longLived: false }, limits);
                return await untilAborted(fn(req, call.ctx) as Promise<unknown>, call.ctx.signal);
              } catch (err) {
                return fail(err);
              } finally {
                call?.end();
              }
            };
    }
    router.service(service, adapted as never);
  }
}

/**
 * Starts a call on the HTTP port from its connect HandlerContext: the exact
 * metadata limit, call tracking (refused while draining), the server's deadline,
 * and the CallContext the service runs with. Shared with the SSE form (sse.ts).
 */
export function beginCall(hctx: HandlerContext, tracker: CallTracker, track: TrackOptions, limits: CallLimits) {
  // Node's HTTP/1.1 parser and HTTP/2 settings bound the headers roughly; this is the exact, same-as-gRPC limit.
  let metadataBytes = 0;
  hctx.requestHeader.forEach((value, name) => void (metadataBytes += name.length + value.length + 32));
  if (metadataBytes > limits.maxMetadataBytes) throw metadataTooLarge(metadataBytes, limits.maxMetadataBytes);
  const controller = new AbortController();
  const end = tracker.begin(controller, track);
  const remaining = hctx.timeoutMs();
  const now = Date.now();
  const deadline = callDeadline(remaining === undefined ? undefined : now + remaining, limits, track.longLived === true, now);
  // connect-node enforces only the client's timeout; ours (the default, or the cap) needs a timer.
  const timer = deadline === undefined ? undefined : setTimeout(() => controller.abort(deadlineExceeded()), Math.max(0, deadline - now));
  // connect-node also aborts its signal when a call completes normally; by then nobody listens.
  const onAbort = () => {
    const reason: unknown = hctx.signal.reason;
    controller.abort(reason instanceof ConnectError && reason.code === Code.DeadlineExceeded ? deadlineExceeded() : endedEarly(deadline));
  };
  hctx.signal.addEventListener("abort", onAbort, { once: true });
  // The object the preflight admitted becomes the call's context: admission is memoised per call object, so it runs once.
  const ctx: CallContext = Object.assign(hctx.values.get(preflightCall) ?? {}, {
    signal: controller.signal,
    deadline,
    peer: "",
    header: (name: string) => hctx.requestHeader.get(name) ?? undefined,
    setTrailer: (name: string, value: string) => hctx.responseTrailer.set(name, value),
    fail: (error: ConnectError) => controller.abort(error),
  });
  return {
    ctx,
    end: () => {
      clearTimeout(timer);
      hctx.signal.removeEventListener("abort", onAbort);
      end();
    },
  };
}
