// Shared by the transports and the services: ending a wait when a call is aborted.

/**
 * `work`, or the call's abort reason as soon as the call is aborted (deadline,
 * client cancel, shutdown), whichever comes first. The client gets its status
 * and the call stops counting as in flight even when some code under it
 * ignores the signal; that code's late result is dropped.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => undefined);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/** A signal aborted with the reason of whichever source aborts first; `unlink` detaches it from them. */
export interface LinkedSignal {
  signal: AbortSignal;
  /** Call once the work is done: until then the sources hold the linked signal. */
  unlink(): void;
}

/**
 * What AbortSignal.any does, without its leak: on Node 20 a signal made by
 * AbortSignal.any stays reachable for good once anything listens to it (the
 * `openai` client always does), about 1.2 KB a call. This one is held only by
 * its sources' listeners, and `unlink` removes those.
 */
export function linkSignals(...sources: AbortSignal[]): LinkedSignal {
  const controller = new AbortController();
  const first = sources.find((s) => s.aborted);
  if (first) {
    controller.abort(first.reason);
    return { signal: controller.signal, unlink: () => undefined };
  }
  const unlink = () => {
    for (const s of sources) s.removeEventListener("abort", onAbort);
  };
  const onAbort = (event: Event) => {
    unlink();
    controller.abort((event.target as AbortSignal).reason);
  };
  for (const s of sources) s.addEventListener("abort", onAbort, { once: true });
  return { signal: controller.signal, unlink };
}
