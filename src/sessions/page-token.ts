import { invalidArgument } from "@qingyu/plugin-api";

/** Position after which the next page starts: newest-first order is (time desc, id desc). */
export interface Cursor {
  time: number;
  id: string;
}

/** Opaque to clients; base64url of the cursor. */
export function encodePageToken(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.time, cursor.id])).toString("base64url");
}

/** The cursor in a page token; INVALID_ARGUMENT naming page_token when it is not one of ours. */
export function decodePageToken(token: string): Cursor | undefined {
  if (token === "") return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (Array.isArray(value) && typeof value[0] === "number" && typeof value[1] === "string") {
      return { time: value[0], id: value[1] };
    }
  } catch {
    // fall through to the error below
  }
  throw invalidArgument("page_token", "is not a token this server issued");
}

/** Whether an item sorts after the cursor in newest-first order. */
export function isAfter(cursor: Cursor | undefined, time: number, id: string): boolean {
  if (!cursor) return true;
  return time < cursor.time || (time === cursor.time && id < cursor.id);
}

/** Newest-first comparison by (time, id). */
export function newestFirst(a: Cursor, b: Cursor): number {
  return b.time - a.time || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}
