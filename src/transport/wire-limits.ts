import { limitExceeded, type ConnectError } from "@qingyu/plugin-api";
import type { DescField, DescMessage } from "@bufbuild/protobuf";

/** The bounds on every map field of a request (`server.limits.maxMapEntries` / `maxMapBytes`). */
export interface MapLimits {
  maxMapEntries: number;
  maxMapBytes: number;
}

/** What a scan does at one field of a message: count a map, or look inside a message that can hold one. */
export type Step = { kind: "map"; name: string } | { kind: "message"; name: string; repeated: boolean; plan: Plan };

/** The fields of a message type that lead to a map, by field number (binary) and by either JSON name. */
export interface Plan {
  readonly byNumber: Map<number, Step>;
  readonly byName: Map<string, Step>;
}

// google.protobuf.Struct is a JSON document (checkpoint data), bounded by sessions.maxCheckpointBytes,
// not metadata: an object of a thousand keys is a fair checkpoint. Its map is not counted.
const DOCUMENT_TYPES = new Set(["google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"]);

const plans = new WeakMap<DescMessage, Plan | null>();

/** The scan plan of a message type; undefined when no map can occur in it (most requests: nothing to scan). */
export function mapPlan(desc: DescMessage): Plan | undefined {
  let plan = plans.get(desc);
  if (plan === undefined) {
    // Built once per type, cycles included: the plan is cached before its fields are filled.
    const built = new Map<DescMessage, Plan>();
    plan = reachesMap(desc, new Set()) ? build(desc, built) : null;
    plans.set(desc, plan);
  }
  return plan ?? undefined;
}

function subMessage(field: DescField): DescMessage | undefined {
  if (field.fieldKind === "message") return field.message;
  if (field.fieldKind === "list" && field.listKind === "message") return field.message;
  return undefined;
}

function reachesMap(desc: DescMessage, visiting: Set<DescMessage>): boolean {
  if (DOCUMENT_TYPES.has(desc.typeName) || visiting.has(desc)) return false;
  visiting.add(desc);
  try {
    return desc.fields.some((f) => {
      if (f.fieldKind === "map") return true;
      const sub = subMessage(f);
      // A message already on the path adds nothing its first visit does not look at.
      return sub !== undefined && reachesMap(sub, visiting);
    });
  } finally {
    visiting.delete(desc);
  }
}

function build(desc: DescMessage, built: Map<DescMessage, Plan>): Plan {
  const known = built.get(desc);
  if (known) return known;
  const plan: Plan = { byNumber: new Map(), byName: new Map() };
  built.set(desc, plan);
  for (const field of desc.fields) {
    let step: Step | undefined;
    if (field.fieldKind === "map") step = { kind: "map", name: field.name };
    const sub = subMessage(field);
    if (sub && reachesMap(sub, new Set())) step = { kind: "message", name: field.name, repeated: field.fieldKind === "list", plan: build(sub, built) };
    if (!step) continue;
    plan.byNumber.set(field.number, step);
    plan.byName.set(field.name, step);
    plan.byName.set(field.jsonName, step);
  }
  return plan;
}

/**
 * The counts of one message instance's maps. Occurrences of a map field add up
 * (protobuf merges them), and so do those of a singular message field: the
 * decoder merges them into one message, so their maps count as one.
 */
export class MapCounts {
  private counts: Map<number | string, { entries: number; bytes: number }> | undefined;
  private children: Map<number | string, MapCounts> | undefined;

  constructor(readonly limits: MapLimits) {}

  /** Adds one entry of `bytes` to map field `key`; says which bound it passed, if one. */
  add(key: number | string, bytes: number): "entries" | "bytes" | undefined {
    const counts = (this.counts ??= new Map());
    let c = counts.get(key);
    if (!c) counts.set(key, (c = { entries: 0, bytes: 0 }));
    c.entries++;
    c.bytes += bytes;
    if (c.entries > this.limits.maxMapEntries) return "entries";
    if (c.bytes > this.limits.maxMapBytes) return "bytes";
    return undefined;
  }

  /** The counts of a singular message field (shared by its occurrences). */
  child(key: number | string): MapCounts {
    const children = (this.children ??= new Map());
    let c = children.get(key);
    if (!c) children.set(key, (c = new MapCounts(this.limits)));
    return c;
  }

  /** Empties it for the next element of a repeated field (one object serves them all). */
  reset(): this {
    this.counts = undefined;
    this.children = undefined;
    return this;
  }
}

/** The refusal of a request with a map over a bound: the caller's input, so INVALID_ARGUMENT (LIMIT_EXCEEDED), with the field named. */
export function mapTooLarge(path: string, bound: "entries" | "bytes", limits: MapLimits): ConnectError {
  return bound === "entries"
    ? limitExceeded(
        path,
        `has more than ${limits.maxMapEntries} entries, the server's limit for a map (server.limits.maxMapEntries)`,
        "server.limits.maxMapEntries",
        limits.maxMapEntries,
      )
    : limitExceeded(
        path,
        `has more than ${limits.maxMapBytes} bytes, the server's limit for a map (server.limits.maxMapBytes)`,
        "server.limits.maxMapBytes",
        limits.maxMapBytes,
      );
}

/** Thrown inside a scan at bytes that do not parse: the scan stops and the decoder reports them. */
export class Malformed extends Error {}

/**
 * Where a scan is in the request, kept as a stack (no string is built unless a
 * map is refused): names and the index of each repeated element, -1 for none.
 */
export class FieldStack {
  private readonly names: string[] = [];
  private readonly indexes: number[] = [];

  get depth(): number {
    return this.names.length;
  }

  push(name: string, index: number): void {
    this.names.push(name);
    this.indexes.push(index);
  }

  pop(): void {
    this.names.pop();
    this.indexes.pop();
  }

  /** The path of field `name` here, e.g. `requests[3].metadata`. */
  path(name: string): string {
    let out = "";
    for (let i = 0; i < this.names.length; i++) out += `${this.names[i]}${this.indexes[i]! >= 0 ? `[${this.indexes[i]}]` : ""}.`;
    return out + name;
  }
}

// Deeper than this, a message is not looked into (our requests nest two levels).
export const MAX_DEPTH = 32;

/**
 * Counts the maps of a binary protobuf message before it is decoded, walking
 * the wire format with no allocation but one counter per map field; throws
 * INVALID_ARGUMENT when one is over a bound. Bytes that do not parse are left
 * to the decoder, which refuses them.
 */
export function checkBinaryMaps(desc: DescMessage, bytes: Uint8Array, limits: MapLimits): void {
  const plan = mapPlan(desc);
  if (!plan) return;
  try {
    scanMessage(new Cursor(bytes), plan, bytes.length, new MapCounts(limits), new FieldStack());
  } catch (err) {
    if (!(err instanceof Malformed)) throw err;
  }
}

const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;

class Cursor {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  varint(end: number): number {
    let value = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= end) throw new Malformed();
      const b = this.buf[this.pos++]!;
      // Multiplication, not shifts: lengths and tags reach 2^32.
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw new Malformed();
  }

  skip(n: number, end: number): void {
    if (n > end - this.pos) throw new Malformed();
    this.pos += n;
  }

  /** Skips the value of a field with this wire type (a group up to its end). */
  skipValue(wire: number, fieldNo: number, end: number): void {
    switch (wire) {
      case VARINT:
        this.varint(end);
        return;
      case FIXED64:
        return this.skip(8, end);
      case LEN:
        return this.skip(this.varint(end), end);
      case FIXED32:
        return this.skip(4, end);
      case START_GROUP:
        for (;;) {
          const tag = this.varint(end);
          if (tag % 8 === END_GROUP) {
            if (Math.floor(tag / 8) !== fieldNo) throw new Malformed();
            return;
          }
          this.skipValue(tag % 8, Math.floor(tag / 8), end);
        }
      default:
        throw new Malformed();
    }
  }
}

function scanMessage(c: Cursor, plan: Plan, end: number, counts: MapCounts, at: FieldStack): void {
  let indexes: Map<number, number> | undefined;
  let scratch: MapCounts | undefined;
  while (c.pos < end) {
    const tag = c.varint(end);
    const fieldNo = Math.floor(tag / 8);
    const wire = tag % 8;
    const step = wire === LEN ? plan.byNumber.get(fieldNo) : undefined;
    if (!step) {
      c.skipValue(wire, fieldNo, end);
      continue;
    }
    const length = c.varint(end);
    if (length > end - c.pos) throw new Malformed();
    const stop = c.pos + length;
    if (step.kind === "map") {
      const over = counts.add(fieldNo, length);
      if (over) throw mapTooLarge(at.path(step.name), over, counts.limits);
    } else if (at.depth < MAX_DEPTH) {
      let index = -1;
      if (step.repeated) {
        indexes ??= new Map();
        index = indexes.get(fieldNo) ?? 0;
        indexes.set(fieldNo, index + 1);
      }
      const own = step.repeated ? (scratch ??= new MapCounts(counts.limits)).reset() : counts.child(fieldNo);
      at.push(step.name, index);
      scanMessage(c, step.plan, stop, own, at);
      at.pop();
    }
    c.pos = stop;
  }
}
