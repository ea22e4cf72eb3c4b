import { ROOT_CONTEXT, type Context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
// A namespace import: Deno's node:v8 has no promiseHooks, and a named import would fail to link there.
import * as v8 from "node:v8";

const CONTEXT = Symbol("qingyu.otel.context");
type Tagged = Promise<unknown> & { [CONTEXT]?: Context };

/**
 * The active trace context carried across `await` by V8's promise hooks
 * directly, instead of AsyncLocalStorage: on Node 20 that goes through the
 * generic async_hooks machinery, which gives every promise in the process
 * async ids and several properties and costs a traced call ~35 µs plus their
 * garbage. Here a promise created inside a context gets one property, and the
 * context is switched around each promise reaction, so code after an `await`
 * (a plugin's process(), a provider) sees the context it started in, as with
 * AsyncLocalStorage. Callbacks of timers and event emitters are not promises:
 * they run in the root context unless bound (`context.bind`), which the base
 * class provides. Used where `v8.promiseHooks` exists (Node); elsewhere the
 * SDK's AsyncLocalStorage manager is.
 */
export class PromiseContextManager extends AsyncLocalStorageContextManager {
  private current: Context = ROOT_CONTEXT;
  private readonly saved: Context[] = [];
  private stop: (() => void) | undefined;

  override active(): Context {
    return this.current;
  }

  override with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    context: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    const previous = this.current;
    this.current = context;
    try {
      return fn.call(thisArg, ...args);
    } finally {
      this.current = previous;
    }
  }

  override enable(): this {
    this.stop ??= v8.promiseHooks.createHook({
      // Most promises in the process (transport, logging) are made outside any trace: they are left untouched.
      init: (promise: Tagged) => {
        if (this.current !== ROOT_CONTEXT) promise[CONTEXT] = this.current;
      },
      before: (promise: Tagged) => {
        this.saved.push(this.current);
        this.current = promise[CONTEXT] ?? ROOT_CONTEXT;
      },
      after: () => {
        this.current = this.saved.pop() ?? ROOT_CONTEXT;
      },
    }) as () => void;
    return this;
  }

  override disable(): this {
    this.stop?.();
    this.stop = undefined;
    this.current = ROOT_CONTEXT;
    this.saved.length = 0;
    return this;
  }

  /** Whether this runtime has the hooks (Node does; Deno does not). */
  static supported(): boolean {
    try {
      return typeof (v8 as Partial<typeof v8>).promiseHooks?.createHook === "function";
    } catch {
      return false;
    }
  }
}
