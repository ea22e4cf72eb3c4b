/**
 * Whether `work` settles (either way) before a timer of `ms` fires: "promptly" as an order of two
 * events rather than a measured duration. `ms` is the wait the code must not sit out (a block, a
 * timeout, a drain bound), well above what the work needs, and a stalled process delays the timer
 * as much as the work, so a loaded machine does not fail it. The timer is cleared after; `work`'s
 * rejection, if any, is left to the test to await.
 */
export async function settlesBefore(work: PromiseLike<unknown> | void, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([
      Promise.resolve(work).then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
