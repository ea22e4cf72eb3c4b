// Requests with one field set to an extreme value, for every string, integer and
// double field (map keys and values and Struct data included) of a service's
// requests, found by walking the protobuf descriptors: a field added to the
// proto is covered without touching the test. Each case is ready for both
// ports: protobuf bytes for gRPC and a JSON body for Connect.
import { create, ScalarType, toBinary, toJson, type DescField, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

/** One request to send: `grpc` undefined when the value cannot be put on that wire (a lone surrogate in protobuf UTF-8). */
export interface ExtremeCase {
  service: DescService;
  method: DescMethod;
  /** e.g. `ExecuteBatch requests[0].options.max_tokens = 2^63-1`. */
  name: string;
  grpc: Uint8Array | undefined;
  /** The Connect JSON body, as text (some values have no JS-object form, e.g. 2^63-1 exactly). */
  connect: string | undefined;
}

/** A value for a string field, and whether protobuf's UTF-8 can carry it. */
interface StringExtreme {
  label: string;
  value: string;
  jsonOnly?: boolean;
}

const STRING_EXTREMES: StringExtreme[] = [
  { label: '""', value: "" },
  { label: "NUL", value: "\u0000" },
  { label: "NUL inside", value: "a\u0000b" },
  { label: "U+FFFF", value: "\uFFFF" },
  { label: "U+202E", value: "\u202Eexe.txt" },
  { label: "emoji", value: "\u{1F600}" },
  { label: "newline", value: "a\nb" },
  { label: "space", value: " " },
  { label: "129 bytes", value: "u".repeat(129) },
  { label: "1 MB", value: "x".repeat(1 << 20) },
  // JSON can name a lone surrogate; protobuf's UTF-8 cannot (the encoder writes U+FFFD).
  { label: "lone high surrogate", value: "\uD800", jsonOnly: true },
  { label: "lone low surrogate", value: "a\uDC00b", jsonOnly: true },
];

const INT_EXTREMES: Array<[string, bigint]> = [
  ["0", 0n],
  ["-1", -1n],
  ["1", 1n],
  ["2^31-1", 2n ** 31n - 1n],
  ["2^31", 2n ** 31n],
  ["2^32-1", 2n ** 32n - 1n],
  ["2^32", 2n ** 32n],
  ["2^53-1", 2n ** 53n - 1n],
  ["2^53", 2n ** 53n],
  ["2^53+1", 2n ** 53n + 1n],
  ["2^63-1", 2n ** 63n - 1n],
  ["-2^63", -(2n ** 63n)],
];

/** A double, and its JSON text in a double field and in a Struct (where NaN has no JSON form). */
const DOUBLE_EXTREMES: Array<[string, number, string, string | undefined]> = [
  ["NaN", NaN, '"NaN"', undefined],
  ["Infinity", Infinity, '"Infinity"', "1e999"],
  ["-Infinity", -Infinity, '"-Infinity"', "-1e999"],
  ["-0", -0, "-0", "-0"],
  ["1e308", 1e308, "1e308", "1e308"],
  ["5e-324", 5e-324, "5e-324", "5e-324"],
  ["-1", -1, "-1", "-1"],
];

type Init = Record<string, unknown>;
/** Path of fields from the request down to the one varied; a list step means its first element. */
type Path = DescField[];

const INT_TYPES = new Set([
  ScalarType.INT32,
  ScalarType.INT64,
  ScalarType.UINT32,
  ScalarType.UINT64,
  ScalarType.SINT32,
  ScalarType.SINT64,
  ScalarType.FIXED32,
  ScalarType.FIXED64,
  ScalarType.SFIXED32,
  ScalarType.SFIXED64,
]);
const STRUCT = "google.protobuf.Struct";
const MARK = "\u0001extreme\u0001";

/**
 * Every case for every method of `service`, each from the method's valid base
 * request with one field replaced. `extraStrings` adds values for fields of one
 * name (forged page tokens for `page_token`).
 */
export function extremeCases(service: DescService, bases: Record<string, Init>, extraStrings: Record<string, StringExtreme[]> = {}): ExtremeCase[] {
  const cases: ExtremeCase[] = [];
  for (const method of service.methods) {
    const base = bases[method.localName];
    if (!base) throw new Error(`no base request for ${method.name}`);
    const add = (name: string, grpc: Uint8Array | undefined, connect: string | undefined) =>
      cases.push({ service, method, name: `${method.name} ${name}`, grpc, connect });
    add("(base)", encode(method.input, base), json(method.input, base));
    walk(method.input, [], (path, leaf) => {
      const at = pathName(path);
      const field = path.at(-1)!;
      if (leaf === "string") {
        for (const s of [...STRING_EXTREMES, ...(extraStrings[field.name] ?? [])]) {
          const init = setIn(base, path, s.value);
          add(`${at} = ${s.label}`, s.jsonOnly ? undefined : encode(method.input, init), json(method.input, init));
        }
      } else if (leaf === "map" || leaf === "struct") {
        const old = (getIn(base, path) ?? {}) as Init;
        for (const s of STRING_EXTREMES) {
          const grpcOk = !s.jsonOnly;
          const withKey = setIn(base, path, { ...old, [s.value]: "v" });
          add(`${at} key = ${s.label}`, grpcOk ? encode(method.input, withKey) : undefined, json(method.input, withKey));
          const withValue = setIn(base, path, { k: s.value });
          add(`${at} value = ${s.label}`, grpcOk ? encode(method.input, withValue) : undefined, json(method.input, withValue));
        }
        if (leaf === "struct") {
          for (const [label, n, , text] of DOUBLE_EXTREMES) {
            const init = setIn(base, path, { k: n });
            add(`${at} number = ${label}`, encode(method.input, init), text && rawJson(method.input, setIn(base, path, { k: MARK }), text));
          }
        }
      } else if (leaf === "int") {
        for (const [label, n] of INT_EXTREMES) {
          const sixtyFour = field.fieldKind === "scalar" && /64/.test(ScalarType[field.scalar]);
          add(`${at} = ${label}`, encodeVarint(method.input, base, path, n), rawJson(method.input, setIn(base, path, MARK), sixtyFour ? `"${n}"` : `${n}`));
        }
      } else {
        for (const [label, n, text] of DOUBLE_EXTREMES) {
          add(`${at} = ${label}`, encode(method.input, setIn(base, path, n)), rawJson(method.input, setIn(base, path, MARK), text));
        }
      }
    });
  }
  return cases;
}

type Leaf = "string" | "int" | "double" | "map" | "struct";

function walk(message: DescMessage, path: Path, visit: (path: Path, leaf: Leaf) => void): void {
  for (const field of message.fields) {
    const here = [...path, field];
    if (field.fieldKind === "scalar") {
      if (field.scalar === ScalarType.STRING) visit(here, "string");
      else if (INT_TYPES.has(field.scalar)) visit(here, "int");
      else if (field.scalar === ScalarType.DOUBLE || field.scalar === ScalarType.FLOAT) visit(here, "double");
    } else if (field.fieldKind === "map") {
      if (field.mapKey === ScalarType.STRING && field.mapKind === "scalar" && field.scalar === ScalarType.STRING) visit(here, "map");
    } else if (field.fieldKind === "message") {
      if (field.message.typeName === STRUCT) visit(here, "struct");
      else walk(field.message, here, visit);
    } else if (field.fieldKind === "list" && field.listKind === "message") {
      walk(field.message, here, visit);
    }
  }
}

function pathName(path: Path): string {
  return path.map((f) => (f.fieldKind === "list" ? `${f.name}[0]` : f.name)).join(".");
}

function getIn(init: Init, path: Path): unknown {
  let at: unknown = init;
  for (const f of path) {
    at = (at as Init | undefined)?.[f.localName];
    if (f.fieldKind === "list") at = (at as unknown[] | undefined)?.[0];
  }
  return at;
}

/** A copy of `init` with the field at `path` set (by localName, as protobuf-es init shapes are keyed). */
function setIn(init: Init, path: Path, value: unknown): Init {
  const [f, ...rest] = path;
  if (!f) return value as Init;
  const current = init[f.localName];
  if (f.fieldKind === "list") {
    const list = [...((current as Init[] | undefined) ?? [{}])];
    list[0] = setIn(list[0] ?? {}, rest, value);
    return { ...init, [f.localName]: list };
  }
  return { ...init, [f.localName]: rest.length ? setIn((current as Init | undefined) ?? {}, rest, value) : value };
}

function encode(schema: DescMessage, init: Init): Uint8Array {
  return toBinary(schema, create(schema, init as never));
}

function json(schema: DescMessage, init: Init): string {
  return JSON.stringify(toJson(schema, create(schema, init as never)));
}

/** The JSON body with the value marked by MARK (by protobuf-es's key for the field) replaced by raw JSON text. */
function rawJson(schema: DescMessage, init: Init, text: string): string {
  // A 32-bit field cannot hold MARK-as-number; set the mark as a string and swap the text in.
  const body = JSON.stringify(toJson(schema, create(schema, markToDefault(schema, init) as never)));
  const marked = injectMark(JSON.parse(body) as Init, schema, init);
  return JSON.stringify(marked).replace(JSON.stringify(MARK), text);
}

/** `init` with MARK (where it stands for a non-string) removed, so protobuf-es can build the rest of the message. */
function markToDefault(schema: DescMessage, init: Init): Init {
  const out: Init = {};
  for (const [key, value] of Object.entries(init)) {
    const f = schema.fields.find((x) => x.localName === key);
    if (value === MARK && f?.fieldKind === "scalar" && f.scalar !== ScalarType.STRING) continue;
    if (f?.fieldKind === "message" && f.message.typeName !== STRUCT && value && typeof value === "object") out[key] = markToDefault(f.message, value as Init);
    else if (f?.fieldKind === "list" && f.listKind === "message" && Array.isArray(value)) out[key] = value.map((v) => markToDefault(f.message, v as Init));
    else out[key] = value;
  }
  return out;
}

/** Puts MARK back into the JSON form, under the field's JSON name. */
function injectMark(jsonValue: Init, schema: DescMessage, init: Init): Init {
  for (const [key, value] of Object.entries(init)) {
    const f = schema.fields.find((x) => x.localName === key);
    if (!f) continue;
    if (value === MARK) jsonValue[f.jsonName] = MARK;
    else if (f.fieldKind === "message" && f.message.typeName !== STRUCT && value && typeof value === "object") {
      jsonValue[f.jsonName] = injectMark((jsonValue[f.jsonName] as Init | undefined) ?? {}, f.message, value as Init);
    } else if (f.fieldKind === "list" && f.listKind === "message" && Array.isArray(value)) {
      const list = (jsonValue[f.jsonName] as Init[] | undefined) ?? [];
      value.forEach((v, i) => (list[i] = injectMark(list[i] ?? {}, f.message, v as Init)));
      jsonValue[f.jsonName] = list;
    }
  }
  return jsonValue;
}

/**
 * The base request with the integer at `path` appended as a raw varint: protobuf
 * takes the last value of a scalar (and merges a repeated message's element), so
 * values the field's type cannot hold (2^63-1 in an int32) still reach the decoder.
 */
function encodeVarint(schema: DescMessage, init: Init, path: Path, value: bigint): Uint8Array {
  const [f, ...rest] = path;
  if (!f) throw new Error("empty path");
  if (rest.length === 0) {
    const w = new BinaryWriter().tag(f.number, WireType.Varint);
    if (value < 0n) w.int64(value);
    else w.uint64(value);
    return concat(encode(schema, init), w.finish());
  }
  if (f.fieldKind !== "message" && !(f.fieldKind === "list" && f.listKind === "message")) throw new Error(`cannot descend into ${f.name}`);
  const current = init[f.localName];
  // The element varied is moved last (a one-element list keeps its order).
  const inner = f.fieldKind === "list" ? ((current as Init[] | undefined)?.[0] ?? {}) : ((current as Init | undefined) ?? {});
  const restInit =
    f.fieldKind === "list" ? { ...init, [f.localName]: ((current as Init[] | undefined) ?? []).slice(1) } : { ...init, [f.localName]: undefined };
  const innerBytes = encodeVarint(f.message, inner, rest, value);
  return concat(encode(schema, restInit), new BinaryWriter().tag(f.number, WireType.LengthDelimited).bytes(innerBytes).finish());
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
