/** Longest caller value quoted whole in an error message or a log line, in UTF-16 units. */
const QUOTE_LIMIT = 64;

/**
 * A caller-supplied value as an error or a log line may quote it: JSON-quoted
 * (so control characters cannot forge lines) and cut to `limit` characters with
 * the original length named. A caller must never make our messages as large as
 * their request: a 1 MB id echoed in grpc-message overflows the trailer.
 */
export function quote(value: string, limit = QUOTE_LIMIT): string {
  if (value.length <= limit) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, limit))}… (${value.length} characters)`;
}

/** Cuts a message we send or log to `limit` characters, saying so. */
export function clip(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}… (cut from ${text.length} characters)`;
}
