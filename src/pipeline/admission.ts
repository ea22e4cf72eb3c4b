import type { Middleware, Principal, RpcCall } from "@qingyu/plugin-api";
import type { CallInfo } from "../executor/context.ts";

/**
 * The `admit` hooks of the pipeline's middleware, in pipeline order. The
 * transports run them on every call's headers (health aside) before its
 * request is decoded, so a caller without credentials costs no decode; RPCs
 * that run no onion (sessions, events, agent listing, admin) take their
 * principal from them. This is how an auth plugin guards every RPC, not only
 * agent runs.
 */
export class Admission {
  private readonly hooks: readonly Middleware[];

  constructor(middleware: readonly Middleware[]) {
    this.hooks = middleware.filter((m) => typeof m.admit === "function");
  }

  /** Whether any middleware guards RPCs (an auth plugin is configured). */
  get guarded(): boolean {
    return this.hooks.length > 0;
  }

  // A call is admitted once: the transport admits it on its headers before decoding the
  // request, and the service asks again with the same call object.
  private readonly admitted = new WeakMap<CallInfo, Promise<Principal | undefined>>();

  /** Runs every hook (once per call object); returns the principal they established, if any. A hook's throw refuses the call. */
  admit(call: CallInfo, service: string, method: string): Promise<Principal | undefined> {
    if (this.hooks.length === 0) return Promise.resolve(undefined);
    let result = this.admitted.get(call);
    if (!result) this.admitted.set(call, (result = this.run(call, service, method)));
    return result;
  }

  /**
   * The principal this call was already admitted with (by the transport, on its
   * headers), or undefined when it was not admitted here: an agent run's onion
   * then starts from it instead of verifying the same credential again.
   */
  admittedWith(call: CallInfo): Promise<Principal | undefined> | undefined {
    return this.admitted.get(call);
  }

  private async run(call: CallInfo, service: string, method: string): Promise<Principal | undefined> {
    const rpc: RpcCall = { service, method, header: (name) => call.header(name), principal: undefined, signal: call.signal };
    for (const hook of this.hooks) await hook.admit!(rpc);
    return rpc.principal;
  }
}
