import { Code, ProviderError } from "@qingyu/plugin-api";
import { PREFIX } from "./errors.ts";

/** JSON text as a value; what is not JSON is the upstream's failure, not ours. */
export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    const shown = text.length > 200 ? `${text.slice(0, 200)}…` : text;
    throw new ProviderError(`${PREFIX}: upstream ${what}: ${shown}`, Code.Unavailable, true);
  }
}
