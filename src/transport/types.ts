import type { ConnectError } from "@qingyu/plugin-api";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { CallInfo } from "../executor/context.ts";
import type { TrackOptions } from "./call-tracker.ts";

/** What a service method knows about its call, whichever transport carried it. */
export interface CallContext extends CallInfo {
  /** Adds a response trailer (gRPC trailing metadata / Connect trailer). */
  setTrailer(name: string, value: string): void;
  /** The client's address, for logs. */
  readonly peer: string;
  /**
   * Ends the call now with `error`, even while the transport waits for a client
   * that does not read: how a service drops its own call (a subscriber too far
   * behind). The call's signal aborts with `error` as its reason.
   */
  fail(error: ConnectError): void;
}

type MethodImpl<M extends GenServiceMethods[string]> = M["methodKind"] extends "unary"
  ? (req: MessageShape<M["input"] & DescMessage>, call: CallContext) => Promise<MessageShape<M["output"] & DescMessage>>
  : M["methodKind"] extends "server_streaming"
    ? (req: MessageShape<M["input"] & DescMessage>, call: CallContext) => AsyncIterable<MessageShape<M["output"] & DescMessage>>
    : M["methodKind"] extends "bidi_streaming"
      ? (requests: AsyncIterable<MessageShape<M["input"] & DescMessage>>, call: CallContext) => AsyncIterable<MessageShape<M["output"] & DescMessage>>
      : never;

/** A service written once against the protobuf-es types, served by both transports. */
export type ServiceImpl<T extends GenServiceMethods> = { [K in keyof T]: MethodImpl<T[K]> };

/** A service descriptor with its implementation. */
export interface HostedService {
  service: GenService<GenServiceMethods>;
  impl: Record<string, (req: never, call: CallContext) => Promise<unknown> | AsyncIterable<unknown>>;
  /** How its calls take part in shutdown. */
  track: TrackOptions;
}

/** Pairs a service with its implementation, checking the types. */
export function hosted<T extends GenServiceMethods>(service: GenService<T>, impl: ServiceImpl<T>, track: TrackOptions = {}): HostedService {
  return { service: service as unknown as GenService<GenServiceMethods>, impl: impl as unknown as HostedService["impl"], track };
}
