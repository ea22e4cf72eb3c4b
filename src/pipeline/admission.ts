import type { Middleware, Principal, RpcCall } from "@qingyu/plugin-api";
import type { CallInfo } from "../executor/context.ts";

/**
 * The `admit` hooks of the pipeline's middleware, in pipeline order, for RPCs
 * that run no onion (sessions, events, agent listing, admin). This is how an
 * auth plugin guards every RPC, not only agent runs.
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

  /** Runs every hook; returns the principal they established, if any. A hook's throw refuses the call. */
  async admit(call: CallInfo, service: string, method: string): Promise<Principal | undefined> {
    if (this.hooks.length === 0) return undefined;
    const rpc: RpcCall = { service, method, header: (name) => call.header(name), principal: undefined, signal: call.signal };
    for (const hook of this.hooks) await hook.admit!(rpc);
    return rpc.principal;
  }
}
