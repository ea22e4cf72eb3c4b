import type { Readable } from "node:stream";

// Messages held before the stream is paused: a caller that sends faster than the service reads waits on HTTP/2 flow control.
const HIGH_WATER = 16;

/**
 * A grpc-js call's incoming messages as an async iterable, each parsed by
 * `parse` (a parse error ends the iteration with it). Unlike the stream's own
 * iterator it also ends when `signal` aborts, so a service waiting for the next
 * request is never left waiting on a call that is over.
 */
export function requestStream<T>(source: Readable, parse: (chunk: Buffer) => T, signal: AbortSignal): AsyncIterable<T> {
  const queue: Buffer[] = [];
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer) => {
    queue.push(chunk);
    if (queue.length >= HIGH_WATER) source.pause();
    notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (err: unknown) => {
    failure ??= err;
    notify();
  };
  const detach = () => {
    source.removeListener("data", onData);
    source.removeListener("end", onEnd);
    source.removeListener("error", onError);
    signal.removeEventListener("abort", onEnd);
  };
  source.on("data", onData);
  source.once("end", onEnd);
  source.once("error", onError);
  signal.addEventListener("abort", onEnd, { once: true });
  return {
    [Symbol.asyncIterator]: () => ({
      async next(): Promise<IteratorResult<T>> {
        for (;;) {
          const chunk = queue.shift();
          if (chunk) {
            if (queue.length < HIGH_WATER && source.isPaused()) source.resume();
            try {
              return { value: parse(chunk), done: false };
            } catch (err) {
              detach();
              throw err;
            }
          }
          if (failure !== undefined) {
            detach();
            throw failure;
          }
          if (ended || signal.aborted) {
            detach();
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => (wake = resolve));
        }
      },
      async return(): Promise<IteratorResult<T>> {
        ended = true;
        queue.length = 0;
        detach();
        notify();
        return { value: undefined, done: true };
      },
    }),
  };
}
