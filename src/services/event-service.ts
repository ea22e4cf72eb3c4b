import { Code, ConnectError, ErrorReason, type EventBus, type EventType, invalidArgument, type RuntimeEvent, withReason } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EventService, EventType as ProtoEventType, SubscribeResponseSchema } from "../gen/qingyu/agent/v1/event_pb.ts";
import { abortReason } from "../errors.ts";
import { eventBytes } from "../events/event-size.ts";
import type { JsonObject } from "../sessions/types.ts";
import type { ServiceImpl } from "../transport/types.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import { eventAudience } from "../pipeline/acting.ts";
import { ids } from "./ids.ts";
import { admitted } from "./scope.ts";
import { Wakeup } from "./wakeup.ts";

/** How far one subscriber may fall behind: `events.subscriberMaxEvents` and `events.subscriberMaxBytes`. */
export interface SubscriberLimits {
  maxEvents: number;
  maxBytes: number;
}

/**
 * EventService: each subscriber gets a queue bounded by events and bytes. One
 * that falls further behind (it reads slowly, or not at all and the transport
 * is stuck writing to it) is dropped at once: its backlog is freed and its call
 * ended with RESOURCE_EXHAUSTED, however full the socket.
 */
export function eventService(
  bus: EventBus,
  live: LiveRuntime,
  limits: SubscriberLimits = { maxEvents: 1000, maxBytes: 1_048_576 },
): ServiceImpl<typeof EventService.method> {
  return {
    async *subscribe(req, call) {
      // Admission only: a subscription may outlive many reloads, so it holds no generation.
      const userId = ids.user(req.userId);
      const agentId = ids.agent(req.agentId);
      const a = await admitted(live, call, { service: EventService.typeName, method: "Subscribe", userId }, async (admitted) => admitted);
      const audience = eventAudience(a, a.user, userId);
      const types = req.types.map((t) => {
        if (t === ProtoEventType.UNSPECIFIED || !(t in ProtoEventType)) throw invalidArgument("types", `contains an unknown event type ${t}`);
        return ProtoEventType[t] as EventType;
      });
      const queue: RuntimeEvent[] = [];
      let queuedBytes = 0;
      let stopped = false;
      const wakeup = new Wakeup(call.signal);
      const unsubscribe = bus.subscribe(
        types.length ? types : "any",
        (event) => {
          // Deliveries already scheduled still arrive after unsubscribing.
          if (stopped) return;
          if (agentId && event.agentId !== agentId) return;
          if (!audience(event.userId)) return;
          const bytes = eventBytes(event);
          if (queue.length >= limits.maxEvents || queuedBytes + bytes > limits.maxBytes) {
            stop();
            call.fail(
              withReason(
                new ConnectError(
                  `the subscriber fell more than ${limits.maxEvents} events or ${limits.maxBytes} bytes behind (it reads slower than events come) and was dropped`,
                  Code.ResourceExhausted,
                ),
                ErrorReason.SUBSCRIBER_TOO_SLOW,
              ),
            );
            return;
          }
          queue.push(event);
          queuedBytes += bytes;
          wakeup.wake();
        },
        { remote: true },
      );
      // A call ended while the transport waits on a client that does not read may never resume
      // this generator: the backlog and the bus listener go now, not in `finally`.
      function stop() {
        if (stopped) return;
        stopped = true;
        unsubscribe();
        queue.length = 0;
        queuedBytes = 0;
        call.signal.removeEventListener("abort", stop);
      }
      call.signal.addEventListener("abort", stop, { once: true });
      try {
        for (;;) {
          // Ended by the client, by a server that is draining (UNAVAILABLE: reconnect elsewhere), or dropped above.
          if (call.signal.aborted) throw abortReason(call.signal);
          const event = queue.shift();
          if (event) {
            queuedBytes -= eventBytes(event);
            yield create(SubscribeResponseSchema, { event: toProtoEvent(event) });
            continue;
          }
          await wakeup.wait();
        }
      } finally {
        stop();
      }
    },
  };
}

function toProtoEvent(e: RuntimeEvent) {
  return {
    eventId: e.id,
    type: ProtoEventType[e.type],
    time: timestampFromDate(e.time),
    agentId: e.agentId ?? "",
    sessionId: e.sessionId ?? "",
    userId: e.userId ?? "",
    data: JSON.parse(JSON.stringify(e.data)) as JsonObject,
  };
}
