import pino, { type Logger } from "pino";
import { onExit } from "./runtime/process.ts";

/** How long a blocked stdout may hold up a flush before the remaining lines are dropped. */
const FLUSH_PATIENCE_MS = 1000;

/**
 * The process logger: JSON lines on stdout. Lines are buffered and written in
 * batches (one write per 4 KiB or per 200 ms), because a write per line cost
 * about 9 µs of a ~60 µs call under load. `flush()` writes what is buffered,
 * and runs at exit; it waits at most FLUSH_PATIENCE_MS for a stdout whose
 * reader has stopped reading, so shutdown never hangs on a full pipe.
 */
export function createLogger(level: string): { log: Logger; flush: () => void } {
  let giveUpAt = Infinity;
  let destination: ReturnType<typeof pino.destination> | undefined;
  const flush = () => {
    giveUpAt = Date.now() + FLUSH_PATIENCE_MS;
    try {
      destination?.flushSync();
      giveUpAt = Infinity;
    } catch {
      // stdout closed, or still full after the wait: the rest cannot be written.
    }
  };
  // Registered before pino's own exit flush (which would retry a full stdout for ever):
  // when ours gives up, the stream is destroyed and pino's finds nothing to do.
  onExit(() => {
    flush();
    if (giveUpAt !== Infinity) destination?.destroy();
  });
  destination = pino.destination({
    dest: 1,
    sync: false,
    minLength: 4096,
    // A stdout that stops being read must not grow memory without bound: beyond this, lines are dropped.
    maxLength: 16 * 1024 * 1024,
    periodicFlush: 200,
    retryEAGAIN: () => Date.now() < giveUpAt,
  });
  const log = pino({ level, base: { service: "qingyu" } }, destination);
  return { log, flush };
}
