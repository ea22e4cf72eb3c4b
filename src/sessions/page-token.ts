import { invalidArgument } from "@qingyu/plugin-api";

/** Position after which the next page starts: newest-first order is (time desc, id desc). */
export interface Cursor {
  time: number;
  id: string;
}

/**
 * The largest `time` a cursor may hold: the last millisecond of year 9999. A
 * session listing's cursor is a creation time, and PostgreSQL reads no ISO date
 * past a four-digit year (nor can a JS Date hold one past 8.64e15 ms); a
 * checkpoint listing's is a version, which no session reaches 2.5e14 writes to.
 */
export const MAX_CURSOR_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

// Ids in cursors are the stores' own: randomUUID, lower case.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Opaque to clients; base64url of the cursor. */
export function encodePageToken(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.time, cursor.id])).toString("base64url");
}

/**
 * The cursor in a page token, or INVALID_ARGUMENT naming page_token when it is
 * not one this server issued. A token that decodes is still the caller's text:
 * only the exact form encodePageToken writes, with an integer time every store
 * can compare and a UUID, passes — so no store meets an invalid date, a float
 * or an id of the caller's making.
 */
export function decodePageToken(token: string): Cursor | undefined {
  if (token === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw forged();
  }
  if (!Array.isArray(value) || value.length !== 2) throw forged();
  const [time, id] = value as unknown[];
  if (!Number.isSafeInteger(time) || (time as number) < 0 || (time as number) > MAX_CURSOR_TIME) throw forged();
  if (typeof id !== "string" || !UUID.test(id)) throw forged();
  const cursor = { time: time as number, id };
  // One spelling per cursor: a re-encoded or padded token is not ours either.
  if (encodePageToken(cursor) !== token) throw forged();
  return cursor;
}

function forged() {
  return invalidArgument("page_token", "is not a token this server issued");
}

/** Newest-first comparison by (time, id). */
export function newestFirst(a: Cursor, b: Cursor): number {
  return b.time - a.time || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}
