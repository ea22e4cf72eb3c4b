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
