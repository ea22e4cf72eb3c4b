import { type AgentContext, Code, ConnectError, type Middleware, type RunEvent } from "@qingyu/plugin-api";
import type { Terminal } from "./types.ts";

/**
 * Observes one middleware's stage of one call (events, spans). `run` calls the
 * middleware's `process` and returns its stage; the observer returns the
 * iterable to use in its place (calling `run` when it sees fit, e.g. inside a
 * span), or undefined, without calling `run`, to leave the stage unobserved.
 */
export type StageObserver = (middleware: Middleware, ctx: AgentContext, run: () => AsyncIterable<RunEvent>) => AsyncIterable<RunEvent> | undefined;

/** A composed onion: one call in, the run's event stream out. */
export type Pipeline = (ctx: AgentContext) => AsyncIterable<RunEvent>;

/**
 * Builds the onion: middlewares[0] is outermost, `terminal` innermost. As in
 * koa-compose, each layer gets a `next` that runs the rest; calling it twice in
 * one call is an error rather than a silent second run of the provider.
 */
export function compose(middlewares: readonly Middleware[], terminal: Terminal, observe?: StageObserver): Pipeline {
  middlewares.forEach((mw, i) => {
    if (mw === null || typeof mw !== "object" || typeof mw.process !== "function") {
      throw new TypeError(`pipeline entry ${i} is not a middleware (expected an object with process(ctx, next))`);
    }
  });
  if (typeof terminal !== "function") throw new TypeError("pipeline terminal must be a function");

  return (ctx) => {
    let reached = -1;
    const dispatch = (i: number): AsyncIterable<RunEvent> => {
      if (i <= reached) {
        throw new ConnectError(`middleware "${middlewares[i - 1]!.name}" called next() more than once`, Code.Internal);
      }
      reached = i;
      if (i === middlewares.length) return terminal(ctx);
      const mw = middlewares[i]!;
      const run = () => {
        const stage = mw.process(ctx, () => dispatch(i + 1));
        if (stage === null || typeof stage !== "object" || !(Symbol.asyncIterator in stage)) {
          throw new ConnectError(`middleware "${mw.name}" did not return an async iterable`, Code.Internal);
        }
        return stage;
      };
      return (observe && observe(mw, ctx, run)) || run();
    };
    return dispatch(0);
  };
}
