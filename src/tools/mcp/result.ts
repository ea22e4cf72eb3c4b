import type { CallToolResult, ContentBlock } from "@modelcontextprotocol/client";

/** Keys whose values are payloads (base64, a resource's text) rather than a description of it. */
const PAYLOAD_KEYS = new Set(["data", "blob", "text"]);

/**
 * What the model sees of a tool result: its structured content as JSON when
 * there is any, else its content parts joined — text as it is, anything else
 * (an image, audio, a resource) as a short JSON note of what it was.
 */
export function resultText(result: CallToolResult): string {
  if (result.structuredContent !== undefined) return JSON.stringify(result.structuredContent);
  return result.content.map(partText).join("\n");
}

function partText(part: ContentBlock): string {
  if (part.type === "text") return part.text;
  return JSON.stringify(describe(part));
}

// A part with its payloads replaced by their sizes: the model learns what came back without megabytes of base64.
function describe(value: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    if (key === "_meta" || key === "annotations") continue;
    if (PAYLOAD_KEYS.has(key) && typeof inner === "string") out[`${key}Length`] = inner.length;
    else if (inner !== null && typeof inner === "object" && !Array.isArray(inner)) out[key] = describe(inner);
    else out[key] = inner;
  }
  return out;
}
