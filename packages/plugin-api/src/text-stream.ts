import type { AgentRunResult, RunEvent } from "./middleware.ts";

// The trap this solves: a middleware that rewrites each delta on its own never
// sees a pattern split across two deltas ("ann@exa" + "mple.com"), so it passes
// both halves through untouched. transformText holds the end of the text back
// until no later delta can change how it is transformed, then transforms and
// releases the part before it as one piece.

/** How transformText holds, transforms and releases the text of a run. */
export interface TextTransformOptions {
  /**
   * Rewrites one piece of the text. Pieces are consecutive and each is passed
   * exactly once, in order. Called as a method of these options, so a per-run
   * object can keep counts without closures.
   */
  transform(text: string): string;
  /** Characters always held at the end: the longest text the transform must see to decide a match there (default 0). */
  holdBack?: number;
  /** A piece may end only right after a character this matches (e.g. /\s/), so words are never split. */
  boundary?: RegExp;
  /**
   * Given the held text and the cut the helper means to release it at, the
   * index from which the text must stay held (cut or more: no objection).
   * Throwing ends the run: what is held is flushed, transformed, then the error is thrown.
   */
  holdFrom?(text: string, cut: number): number;
  /** Most characters held at once (default 65,536); past it, boundary and holdFrom give way. */
  maxHold?: number;
  /** Last say on the completed result, its output already set: returns the result to emit (e.g. with metadata added). */
  completed?(result: AgentRunResult): AgentRunResult;
}

/**
 * The run's events with its text transformed across delta boundaries.
 * `started` and other events pass through as they come; held text is
 * released as soon as it cannot change, and all of it is flushed before
 * `completed`, at the end of the stream, and before an upstream error is
 * rethrown. Abandoning the result closes the upstream.
 *
 * Unary equals stream: the emitted `completed.result.output` is always the
 * emitted deltas joined. The text transformed is the upstream's deltas
 * joined; when its completed output extends them (a layer that answered with
 * no deltas, or appended only to the result), the rest is treated as one last
 * delta; when it contradicts text already streamed, the streamed text wins.
 * That output equals transform(whole text) when the options describe the
 * transform: no match needs more than holdBack characters to be decided, and
 * boundary and holdFrom keep each match inside one piece.
 */
export function transformText(stream: AsyncIterable<RunEvent>, options: TextTransformOptions): AsyncIterable<RunEvent> {
  return transformed(stream, new HeldText(options));
}

async function* transformed(stream: AsyncIterable<RunEvent>, held: HeldText): AsyncGenerator<RunEvent> {
  try {
    for await (const event of stream) {
      if (event.type === "delta") {
        const text = held.push(event.text);
        if (text) yield { type: "delta", text };
      } else if (event.type === "completed") {
        const text = held.end(event.result.output);
        if (text) yield { type: "delta", text };
        yield { type: "completed", result: held.result(event.result) };
      } else {
        yield event;
      }
    }
  } catch (err) {
    let text = "";
    try {
      text = held.flush();
    } catch {
      // The transform itself failed: held text cannot be released untransformed, so it is dropped.
    }
    if (text) yield { type: "delta", text };
    throw err;
  }
  const text = held.flush();
  if (text) yield { type: "delta", text };
}

// Sticky copies of boundary patterns, made once per pattern rather than once per run.
const sticky = new WeakMap<RegExp, RegExp>();
function stickyCopy(re: RegExp): RegExp {
  let copy = sticky.get(re);
  if (!copy) {
    copy = new RegExp(re.source, `${re.flags.replace(/[gy]/g, "")}y`);
    sticky.set(re, copy);
  }
  return copy;
}

/** The state of one run: text held, text released, and when to look for a cut next. */
class HeldText {
  private held = "";
  /** The upstream's deltas joined, to tell whether its completed output agrees with them. */
  private raw = "";
  /** What was emitted, joined: the output of the completed result. */
  private sent = "";
  private lookAt: number;
  private readonly holdBack: number;
  private readonly maxHold: number;
  private readonly boundary: RegExp | undefined;

  constructor(private readonly options: TextTransformOptions) {
    this.holdBack = Math.max(0, Math.floor(options.holdBack ?? 0));
    this.maxHold = Math.max(this.holdBack, Math.floor(options.maxHold ?? 65_536));
    this.boundary = options.boundary && stickyCopy(options.boundary);
    this.lookAt = this.nextLook(0);
  }

  /** Takes a delta's text; returns what can be released now, transformed ("" for nothing). */
  push(text: string): string {
    this.raw += text;
    this.held += text;
    return this.held.length < this.lookAt ? "" : this.release();
  }

  /** Takes the upstream's completed output; returns the rest of the text, transformed. */
  end(output: string): string {
    if (output !== this.raw && output.startsWith(this.raw)) this.held += output.slice(this.raw.length);
    return this.flush();
  }

  /** The completed result to emit; starts the state over for anything after it. */
  result(upstream: AgentRunResult): AgentRunResult {
    const result = { ...upstream, output: this.sent };
    this.raw = this.sent = "";
    this.lookAt = this.nextLook(0);
    return this.options.completed ? this.options.completed(result) : result;
  }

  /** Everything held, transformed. */
  flush(): string {
    const text = this.held;
    this.held = "";
    if (!text) return "";
    const out = this.options.transform(text);
    this.sent += out;
    return out;
  }

  private release(): string {
    const text = this.held;
    const length = text.length;
    let cut = length - this.holdBack;
    if (cut > 0 && this.boundary) cut = this.afterBoundary(text, cut);
    if (cut > 0 && this.options.holdFrom) {
      const from = this.options.holdFrom(text, cut);
      // NaN or a negative answer from a faulty hook holds everything: holding is always the safe side.
      if (!(from >= cut)) cut = from > 0 ? Math.floor(from) : 0;
    }
    cut = Math.max(cut, length - this.maxHold);
    if (cut > 0) this.held = text.slice(cut);
    this.lookAt = this.nextLook(this.held.length);
    if (cut <= 0) return "";
    const out = this.options.transform(text.slice(0, cut));
    this.sent += out;
    return out;
  }

  // Looking again only once the held text has grown by half of holdBack (or a quarter, when more is
  // held) bounds how often the boundary search and holdFrom, each linear in what is held, see a
  // character: about three times, whatever the delta sizes, at the price of holding up to 1.5 × holdBack.
  private nextLook(held: number): number {
    return Math.max(held, this.holdBack) + Math.max(held >> 2, this.holdBack >> 1) + 1;
  }

  /** Just after the last boundary character before `cut`; the maxHold limit when there is none. */
  private afterBoundary(text: string, cut: number): number {
    const boundary = this.boundary!;
    const stop = Math.max(0, text.length - this.maxHold);
    for (let i = cut - 1; i >= stop; i--) {
      boundary.lastIndex = i;
      if (boundary.test(text)) return i + 1;
    }
    return stop;
  }
}
