/** What the function reads headers through: a fetch Headers, or anything with its `get`. */
export interface HeaderReader {
  get(name: string): string | null | undefined;
}

/**
 * How long an HTTP answer asks to wait before trying again, in milliseconds:
 * OpenAI's `retry-after-ms` first, then the standard `Retry-After` (seconds or
 * an HTTP date). Undefined when it says nothing readable.
 */
export function retryAfterMs(headers: HeaderReader | undefined, now = Date.now()): number | undefined {
  const ms = Number.parseFloat(headers?.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return Math.round(ms);
  const value = headers?.get("retry-after")?.trim();
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  // An HTTP date names its day and month; Date.parse would also take "-3" as a year.
  if (!/[a-z]/i.test(value)) return undefined;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
