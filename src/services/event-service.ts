import { Code, ConnectError, type EventBus, type EventType, invalidArgument, type RuntimeEvent } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EventService, EventType as ProtoEventType, SubscribeResponseSchema } from "../gen/qingyu/agent/v1/event_pb.ts";
import { abortReason } from "../errors.ts";
import type { JsonObject } from "../sessions/types.ts";
import type { ServiceImpl } from "../transport/types.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import { admitted } from "./scope.ts";
import { Wakeup } from "./wakeup.ts";

/**
 * EventService: each subscriber gets a bounded queue; one that falls more than
 * `maxQueued` events behind is ended with RESOURCE_EXHAUSTED instead of growing
 * memory without bound.
 */
export function eventService(bus: EventBus, live: LiveRuntime, maxQueued = 1000): ServiceImpl<typeof EventService.method> {
  return {
    async *subscribe(req, call) {
      // Admission only: a subscription may outlive many reloads, so it holds no generation.
      const { principal, user } = await admitted(live, call, { service: EventService.typeName, method: "Subscribe", userId: req.userId }, async (a) => a);
      // With auth, a user sees only events of their own calls; an admin sees whatever user_id selects.
      const userFilter = principal?.admin ? req.userId : user;
      const types = req.types.map((t) => {
        if (t === ProtoEventType.UNSPECIFIED || !(t in ProtoEventType)) throw invalidArgument("types", `contains an unknown event type ${t}`);
        return ProtoEventType[t] as EventType;
      });
      const queue: RuntimeEvent[] = [];
      let overflowed = false;
      const wakeup = new Wakeup(call.signal);
      const unsubscribe = bus.subscribe(types.length ? types : "any", (event) => {
        if (req.agentId && event.agentId !== req.agentId) return;
        if (userFilter && event.userId !== userFilter) return;
        if (queue.length >= maxQueued) overflowed = true;
        else queue.push(event);
        wakeup.wake();
      }, { remote: true });
      try {
        for (;;) {
          // Ended by the client, or by a server that is draining: UNAVAILABLE tells a client to reconnect elsewhere.
          if (call.signal.aborted) throw abortReason(call.signal);
          const event = queue.shift();
          if (event) {
            yield create(SubscribeResponseSchema, { event: toProtoEvent(event) });
            continue;
          }
          if (overflowed) throw new ConnectError(`subscriber fell more than ${maxQueued} events behind and was dropped`, Code.ResourceExhausted);
          await wakeup.wait();
        }
      } finally {
        unsubscribe();
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
