import pino, { type Logger } from "pino";

/** The process logger: JSON lines on stdout, written asynchronously off the hot path. */
export function createLogger(level: string): { log: Logger; flush: () => void } {
  const destination = pino.destination({ dest: 1, sync: false });
  const log = pino({ level, base: { service: "qingyu" } }, destination);
  return { log, flush: () => destination.flushSync() };
}
