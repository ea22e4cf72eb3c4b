import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import type { Detector } from "./detectors.ts";

/** A custom pattern as the options give it, already validated. */
interface CustomPattern {
  name: string;
  pattern: string;
  flags: string;
  replacement?: string;
}

/** What the redactor is built from. */
export interface RedactorSettings {
  /** The built-in detectors that are on. */
  builtins: readonly Detector[];
  patterns: readonly CustomPattern[];
  /** The replacement template; `{name}` becomes the detector's name. */
  replacement: string;
  maxHold: number;
}

/** Where one run's counts go: per detector, in the redactor's order. */
export interface Tally {
  counts: number[] | undefined;
}

interface Kind {
  name: string;
  replacement: string;
  valid: ((match: string) => boolean) | undefined;
}

/**
 * Finds the detectors' matches in a text, left to right, never overlapping:
 * at one position the first detector in order wins, built-ins before custom
 * patterns, as if all were one alternation. The built-ins are one regular
 * expression (one pass, one exec per match); each custom pattern keeps its own
 * flags, so it is its own expression, merged by position.
 *
 * Shared by every call of a plugin instance: its expressions and cursor are
 * used only synchronously, inside one redact() or holdFrom(), so calls never interleave on them.
 */
export class Redactor {
  /** Detector names, in the order of Tally.counts. */
  readonly names: readonly string[];
  private readonly kinds: readonly Kind[];
  /** The built-ins' alternation (absent when all are off), then each custom pattern. */
  private readonly expressions: RegExp[] = [];
  private readonly builtinCount: number;
  private readonly found: (RegExpExecArray | null)[];
  private readonly maxHold: number;
  // The current match of the scan: set by nextMatch().
  private start = 0;
  private end = 0;
  private kind = 0;

  constructor(settings: RedactorSettings) {
    const template = (name: string, own?: string) => (own ?? settings.replacement).replaceAll("{name}", name);
    const kinds: Kind[] = settings.builtins.map((d) => ({ name: d.name, replacement: template(d.name), valid: d.valid }));
    this.builtinCount = settings.builtins.length;
    if (this.builtinCount > 0) this.expressions.push(new RegExp(settings.builtins.map((d) => `(${d.source})`).join("|"), "g"));
    for (const p of settings.patterns) {
      kinds.push({ name: p.name, replacement: template(p.name, p.replacement), valid: undefined });
      this.expressions.push(new RegExp(p.pattern, `${p.flags}g`));
    }
    this.kinds = kinds;
    this.names = kinds.map((k) => k.name);
    this.found = new Array(this.expressions.length).fill(null);
    this.maxHold = settings.maxHold;
  }

  /** `text` with every valid match replaced, counted in `tally` when given. */
  redact(text: string, tally: Tally | undefined): string {
    let out = "";
    let last = 0;
    this.begin(text);
    while (this.nextMatch(text)) {
      const kind = this.kinds[this.kind]!;
      if (kind.valid && !kind.valid(text.slice(this.start, this.end))) continue;
      out += text.slice(last, this.start) + kind.replacement;
      last = this.end;
      if (tally) (tally.counts ??= new Array(this.kinds.length).fill(0))[this.kind]++;
    }
    // No match: the same string back, nothing copied.
    return last === 0 ? text : out + text.slice(last);
  }

  /**
   * transformText's holdFrom: the start of a match running across `cut` (it
   * is released whole once the text after it is known), else `cut`. A match
   * that would have to be held past maxHold ends the call instead of being
   * released in parts: the held text is then flushed with it redacted to its end.
   */
  holdFrom(text: string, cut: number): number {
    this.begin(text);
    while (this.nextMatch(text)) {
      if (this.start >= cut) return cut;
      if (this.end > cut) {
        if (text.length - this.start > this.maxHold) {
          const cut = new ConnectError(
            `redact: a ${this.kinds[this.kind]!.name} match runs past maxHold (${this.maxHold} characters); the answer is cut here rather than released in parts`,
            Code.ResourceExhausted,
          );
          throw withReason(cut, ErrorReason.LIMIT_EXCEEDED, { limit: "redact.maxHold", max: String(this.maxHold) });
        }
        return this.start;
      }
    }
    return cut;
  }

  private begin(text: string): void {
    for (let i = 0; i < this.expressions.length; i++) this.found[i] = this.exec(i, text, 0);
  }

  /** Advances to the next match at or after the last one's end; false when there is none. */
  private nextMatch(text: string): boolean {
    let best = -1;
    for (let i = 0; i < this.found.length; i++) {
      const m = this.found[i];
      if (m && (best < 0 || m.index < this.found[best]!.index)) best = i;
    }
    if (best < 0) return false;
    const m = this.found[best]!;
    this.start = m.index;
    this.end = m.index + m[0].length;
    this.kind = best === 0 && this.builtinCount > 0 ? whichGroup(m) : this.builtinCount + best - (this.builtinCount > 0 ? 1 : 0);
    // Matches never overlap: every expression whose next match starts inside this one looks again after it.
    for (let i = 0; i < this.found.length; i++) {
      const other = this.found[i];
      if (other && other.index < this.end) this.found[i] = this.exec(i, text, this.end);
    }
    return true;
  }

  private exec(i: number, text: string, from: number): RegExpExecArray | null {
    const re = this.expressions[i]!;
    re.lastIndex = from;
    let m = re.exec(text);
    // An empty match redacts nothing and would never advance.
    while (m && m[0].length === 0) {
      re.lastIndex = m.index + 1;
      m = re.exec(text);
    }
    return m;
  }
}

/** Which built-in matched: the index of the alternation's group that took part. */
function whichGroup(m: RegExpExecArray): number {
  for (let g = 1; g < m.length; g++) if (m[g] !== undefined) return g - 1;
  return 0;
}
