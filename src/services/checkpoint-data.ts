import { invalidArgument, type JsonObject, type JsonValue } from "@qingyu/plugin-api";
import { quote } from "../quote.ts";

// A lone surrogate: what \p{Cs} matches under the u flag (a pair is one code point, not Cs).
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Refuses checkpoint data no store can keep as sent: a NaN or infinite number
 * (JSON has no form for one: stored, it reads back as null, and the Connect
 * port cannot even answer the save) and a string or key holding a lone
 * surrogate (Connect JSON can spell one inside a Struct; PostgreSQL's jsonb
 * refuses it). INVALID_ARGUMENT naming `data`, on every store and both ports.
 * A loop, not recursion: the nesting limit is checked after this.
 */
export function checkCheckpointData(data: JsonObject): void {
  const stack: JsonValue[] = [data];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value === "number") {
      if (!Number.isFinite(value)) throw invalidArgument("data", `holds the number ${value}, which JSON has no form for`);
    } else if (typeof value === "string") {
      if (LONE_SURROGATE.test(value)) throw loneSurrogate("string", value);
    } else if (Array.isArray(value)) {
      for (const child of value) stack.push(child);
    } else if (value !== null && typeof value === "object") {
      for (const key in value) {
        if (LONE_SURROGATE.test(key)) throw loneSurrogate("key", key);
        stack.push(value[key] as JsonValue);
      }
    }
  }
}

function loneSurrogate(what: string, text: string) {
  return invalidArgument("data", `the ${what} ${quote(text)} holds a lone UTF-16 surrogate, which is not Unicode text`);
}
