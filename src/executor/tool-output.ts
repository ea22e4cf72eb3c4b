/** What a tool returned, as the text the model is given: a string as is, anything else as JSON. */
export function outputText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === undefined) return "";
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // A cycle or a BigInt: the model still gets something readable.
    return String(value);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * `text` cut to at most `maxBytes` of UTF-8 (never mid-character) with a note
 * saying how much was cut, so a 50 MB answer costs the model (and the session)
 * a bounded prompt and the model knows it saw only part.
 */
export function boundedOutput(text: string, maxBytes: number): string {
  // A UTF-16 unit is at most 3 UTF-8 bytes: a short text needs no encoding to know it fits.
  if (text.length * 3 <= maxBytes) return text;
  const bytes = encoder.encode(text);
  if (bytes.length <= maxBytes) return text;
  const note = `\n[output truncated: the tool returned ${bytes.length} bytes; the limit (tools.maxOutputBytes) is ${maxBytes}]`;
  let end = Math.max(0, maxBytes - encoder.encode(note).length);
  // Back off to a character boundary: continuation bytes are 10xxxxxx.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return decoder.decode(bytes.subarray(0, end)) + note;
}

/** Any thrown value as the error text the model reads. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return typeof err === "string" ? err : outputText(err);
}
