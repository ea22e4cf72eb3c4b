import { invalidArgument } from "@qingyu/plugin-api";
import { quote } from "../quote.ts";

/** Longest user id, agent id or model name a caller may send, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 128;
/** Longest page token a caller may send back; ours are far shorter. */
const MAX_PAGE_TOKEN_CHARS = 512;
/** Highest session version: versions are JS numbers, exact up to 2^53-1. */
export const MAX_VERSION = Number.MAX_SAFE_INTEGER;

// Session and checkpoint ids are UUIDs in every store; any case is accepted and the
// lower-case form is the id, so one session has one key in Redis as in PostgreSQL.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Printable: no control or format characters (which forge log lines or hide text) and no line separators.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * The checks every id a caller sends passes at the service edge, before auth,
 * logs, stores or events see it: an id is the size and shape the server
 * issues, so nothing downstream copies megabytes of a caller's choosing.
 * Each returns the normalised value; empty stays empty (the field was not given).
 */
export const ids = {
  /** A session id: a UUID, returned in lower case. */
  session(raw: string, field = "session_id"): string {
    return uuid(raw, field, "a session id");
  },

  /** A run id: a UUID, returned in lower case. */
  run(raw: string, field = "run_id"): string {
    return uuid(raw, field, "a run id");
  },

  /** An idempotency key or tool call id: as a user id. */
  key(raw: string, field: string): string {
    return name(raw, field);
  },

  /** A checkpoint id: a UUID, returned in lower case. */
  checkpoint(raw: string, field = "checkpoint_id"): string {
    return uuid(raw, field, "a checkpoint id");
  },

  /** A user id: at most MAX_NAME_BYTES of printable text. */
  user(raw: string, field = "user_id"): string {
    return name(raw, field);
  },

  /** An agent id, as the user id (an unknown one is NOT_FOUND later). */
  agent(raw: string, field = "agent_id"): string {
    return name(raw, field);
  },

  /** A model name asked for in options, as the user id. */
  model(raw: string, field = "options.model"): string {
    return name(raw, field);
  },

  /**
   * A session version a caller expects (SaveCheckpoint's expected_version):
   * unset stays undefined (no check). Versions count writes in JS numbers, so
   * one past MAX_VERSION could never be reached, and would compare rounded.
   */
  version(raw: bigint | undefined, field = "expected_version"): number | undefined {
    if (raw === undefined) return undefined;
    if (raw < 0n) throw invalidArgument(field, `is ${raw}; a version is never negative`);
    if (raw > BigInt(MAX_VERSION)) throw invalidArgument(field, `is ${raw}; no session reaches a version above ${MAX_VERSION} (2^53-1)`);
    return Number(raw);
  },

  /** A page token: bounded here, decoded (and refused if forged) by the store. */
  pageToken(raw: string, field = "page_token"): string {
    if (raw.length > MAX_PAGE_TOKEN_CHARS)
      throw invalidArgument(field, `is ${raw.length} characters; a page token the server issued is at most ${MAX_PAGE_TOKEN_CHARS}`);
    return raw;
  },
};

function uuid(raw: string, field: string, what: string): string {
  if (raw === "") return raw;
  if (raw.length !== 36 || !UUID.test(raw)) throw invalidArgument(field, `${quote(raw)} is not ${what} (a UUID the server issued)`);
  return raw.toLowerCase();
}

function name(raw: string, field: string): string {
  if (raw === "") return raw;
  // UTF-8 never takes fewer bytes than UTF-16 units, so a long string is refused without encoding it.
  if (raw.length > MAX_NAME_BYTES || Buffer.byteLength(raw, "utf8") > MAX_NAME_BYTES) {
    throw invalidArgument(field, `${quote(raw)} is longer than ${MAX_NAME_BYTES} bytes`);
  }
  if (UNPRINTABLE.test(raw)) throw invalidArgument(field, `${quote(raw)} contains a control or format character`);
  return raw;
}
