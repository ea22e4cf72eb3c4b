import type { DescMessage } from "@bufbuild/protobuf";
import { FieldStack, Malformed, MapCounts, mapPlan, mapTooLarge, MAX_DEPTH, type MapLimits, type Plan, type Step } from "./wire-limits.ts";

/**
 * Counts the maps of a JSON request body before JSON.parse builds them, by
 * walking the UTF-8 bytes; throws INVALID_ARGUMENT when one is over a bound.
 * A map's bytes are its entries' text as sent. Text that is not JSON is left
 * to the parser, which refuses it.
 */
export function checkJsonMaps(desc: DescMessage, bytes: Uint8Array, limits: MapLimits): void {
  const plan = mapPlan(desc);
  if (!plan) return;
  const c = new JsonCursor(bytes);
  try {
    c.ws();
    if (c.peek() !== OPEN_OBJECT) return;
    scanObject(c, names(plan), new MapCounts(limits), new FieldStack());
  } catch (err) {
    if (!(err instanceof Malformed)) throw err;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const LOWER_N = 0x6e;

/** A plan's field names as bytes, so keys are compared without decoding them. */
type Names = { name: Uint8Array; step: Step }[];
const nameCache = new WeakMap<Plan, Names>();
const utf8 = new TextEncoder();

function names(plan: Plan): Names {
  let list = nameCache.get(plan);
  if (!list) nameCache.set(plan, (list = [...plan.byName].map(([name, step]) => ({ name: utf8.encode(name), step }))));
  return list;
}

class JsonCursor {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  peek(): number {
    if (this.pos >= this.buf.length) throw new Malformed();
    return this.buf[this.pos]!;
  }

  ws(): void {
    const buf = this.buf;
    while (this.pos < buf.length) {
      const b = buf[this.pos]!;
      if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) return;
      this.pos++;
    }
  }

  expect(b: number): void {
    this.ws();
    if (this.peek() !== b) throw new Malformed();
    this.pos++;
  }

  /** Skips a string at pos; returns whether it held an escape. */
  string(): boolean {
    if (this.peek() !== QUOTE) throw new Malformed();
    const buf = this.buf;
    let escaped = false;
    for (let i = this.pos + 1; i < buf.length; i++) {
      const b = buf[i]!;
      if (b === BACKSLASH) {
        escaped = true;
        i++;
      } else if (b === QUOTE) {
        this.pos = i + 1;
        return escaped;
      }
    }
    throw new Malformed();
  }

  /** Skips any value, iteratively (a deeply nested one must not overflow the stack). */
  value(): void {
    this.ws();
    let depth = 0;
    do {
      const b = this.peek();
      if (b === QUOTE) this.string();
      else if (b === OPEN_OBJECT || b === OPEN_ARRAY) {
        depth++;
        this.pos++;
      } else if (b === CLOSE_OBJECT || b === CLOSE_ARRAY) {
        if (depth === 0) throw new Malformed();
        depth--;
        this.pos++;
      } else if (depth > 0)
        this.pos++; // commas, colons, white space, literals inside
      else this.literal();
    } while (depth > 0);
  }

  /** A number, true, false or null: up to the next delimiter. */
  literal(): void {
    const start = this.pos;
    const buf = this.buf;
    while (this.pos < buf.length) {
      const b = buf[this.pos]!;
      if (b === COMMA || b === CLOSE_OBJECT || b === CLOSE_ARRAY || b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) break;
      this.pos++;
    }
    if (this.pos === start) throw new Malformed();
  }

  /** After an element: true when another follows, false at `close`. */
  more(close: number): boolean {
    this.ws();
    const b = this.peek();
    this.pos++;
    if (b === COMMA) return true;
    if (b === close) return false;
    throw new Malformed();
  }

  /** A null where a map or message may stand. */
  isNull(): boolean {
    this.ws();
    if (this.peek() !== LOWER_N) return false;
    this.literal();
    return true;
  }
}

/** The step of the key just skipped (between `start` and the cursor), if it names one. */
function stepOf(c: JsonCursor, start: number, escaped: boolean, list: Names): Step | undefined {
  const length = c.pos - start - 2;
  if (escaped) {
    // "\u006detadata" is "metadata" to JSON.parse; a field name is short, so decoding one is cheap.
    if (length > 256) return undefined;
    const key = JSON.parse(new TextDecoder().decode(c.buf.subarray(start, c.pos))) as string;
    return list.find((n) => n.name.length === key.length && new TextDecoder().decode(n.name) === key)?.step;
  }
  outer: for (const { name, step } of list) {
    if (name.length !== length) continue;
    for (let i = 0; i < length; i++) if (c.buf[start + 1 + i] !== name[i]) continue outer;
    return step;
  }
  return undefined;
}

function scanObject(c: JsonCursor, list: Names, counts: MapCounts, at: FieldStack): void {
  c.expect(OPEN_OBJECT);
  c.ws();
  if (c.peek() === CLOSE_OBJECT) {
    c.pos++;
    return;
  }
  let scratch: MapCounts | undefined;
  do {
    c.ws();
    const start = c.pos;
    const escaped = c.string();
    const step = stepOf(c, start, escaped, list);
    c.expect(COLON);
    if (!step || c.isNull()) c.value();
    else if (step.kind === "map") scanMap(c, step.name, counts, at);
    else if (at.depth >= MAX_DEPTH) c.value();
    else if (!step.repeated) {
      at.push(step.name, -1);
      scanObject(c, names(step.plan), counts.child(step.name), at);
      at.pop();
    } else {
      c.expect(OPEN_ARRAY);
      c.ws();
      if (c.peek() === CLOSE_ARRAY) c.pos++;
      else {
        let index = 0;
        do {
          at.push(step.name, index++);
          if (!c.isNull()) scanObject(c, names(step.plan), (scratch ??= new MapCounts(counts.limits)).reset(), at);
          at.pop();
        } while (c.more(CLOSE_ARRAY));
      }
    }
  } while (c.more(CLOSE_OBJECT));
}

function scanMap(c: JsonCursor, name: string, counts: MapCounts, at: FieldStack): void {
  c.expect(OPEN_OBJECT);
  c.ws();
  if (c.peek() === CLOSE_OBJECT) {
    c.pos++;
    return;
  }
  do {
    c.ws();
    const start = c.pos;
    c.string();
    c.expect(COLON);
    c.value();
    const over = counts.add(name, c.pos - start);
    if (over) throw mapTooLarge(at.path(name), over, counts.limits);
  } while (c.more(CLOSE_OBJECT));
}
