import { type AgentRunResult, Code, ConnectError, type RunEvent, type TextTransformOptions, transformText } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { collect, runResult } from "../../support/plugin-context.ts";

const EMAIL = /[\w.+-]+@[\w-]+(?:\.[\w-]+)+/g;
/** Masks email addresses; a piece may end only after whitespace, so an address is never cut. */
const emails: TextTransformOptions = { transform: (text) => text.replace(EMAIL, "<email>"), boundary: /\s/ };

/** A run whose text comes in the given deltas, then completed with their concatenation. */
async function* upstream(chunks: readonly string[], output = chunks.join("")): AsyncIterable<RunEvent> {
  yield { type: "started", model: "m" };
  for (const text of chunks) yield { type: "delta", text };
  yield { type: "completed", result: runResult(output) };
}

/** `text` cut at the given offsets. */
const cutAt = (text: string, offsets: readonly number[]) => [0, ...offsets].map((from, i) => text.slice(from, offsets[i] ?? text.length));
/** `text` in `n` deltas of (nearly) equal size. */
const inParts = (text: string, n: number) =>
  cutAt(
    text,
    Array.from({ length: n - 1 }, (_, i) => Math.round(((i + 1) * text.length) / n)),
  );

function deltasOf(events: RunEvent[]): string[] {
  return events.flatMap((e) => (e.type === "delta" ? [e.text] : []));
}
function resultOf(events: RunEvent[]): AgentRunResult {
  const last = events.at(-1);
  if (last?.type !== "completed") throw new Error(`the run ended with ${last?.type}`);
  return last.result;
}

describe("transformText: text split across deltas", () => {
  const text = "write to ann.lee@example.com today, or to bo@example.org";
  const expected = "write to <email> today, or to <email>";

  it("the trap: transforming each delta on its own leaks an address split over two deltas", () => {
    const leaked = ["write to ann.lee@exa", "mple.com today"].map((t) => t.replace(EMAIL, "<email>")).join("");

    expect(leaked).toContain("ann.lee@example.com");
  });

  it("an address split across 2 deltas, at every offset, never appears in an emitted delta", async () => {
    for (let at = 1; at < text.length; at++) {
      const events = await collect(transformText(upstream(cutAt(text, [at])), emails));

      const deltas = deltasOf(events);
      expect(deltas.join(""), `split at ${at}`).toBe(expected);
      expect(deltas.some((d) => d.includes("@"))).toBe(false);
      expect(resultOf(events).output).toBe(expected);
    }
  });

  it("... across 3 deltas, at every pair of offsets", async () => {
    for (let a = 1; a < text.length - 1; a++) {
      for (let b = a + 1; b < text.length; b++) {
        const events = await collect(transformText(upstream(cutAt(text, [a, b])), emails));
        expect(deltasOf(events).join(""), `split at ${a}, ${b}`).toBe(expected);
        expect(resultOf(events).output).toBe(expected);
      }
    }
  });

  it("... across 10 deltas, and one character per delta", async () => {
    for (const chunks of [inParts(text, 10), [...text]]) {
      const events = await collect(transformText(upstream(chunks), emails));
      expect(deltasOf(events).some((d) => d.includes("@"))).toBe(false);
      expect(deltasOf(events).join("")).toBe(expected);
      expect(resultOf(events).output).toBe(expected);
    }
  });

  it("releases text before the end once it cannot change, not all at the end", async () => {
    const long = `${"lorem ipsum dolor ".repeat(20)}mail ann@example.com`;
    const events = await collect(transformText(upstream(long.split(/(?<= )/)), emails));

    expect(deltasOf(events).length).toBeGreaterThan(10);
    expect(deltasOf(events).join("")).toBe(`${"lorem ipsum dolor ".repeat(20)}mail <email>`);
  });

  it("holds a pattern that spans deltas and whitespace with holdBack and holdFrom", async () => {
    // A "BEGIN ... END" block, whatever it holds, is masked whole; an opened one is held until it ends.
    const block: TextTransformOptions = {
      transform: (t) => t.replace(/BEGIN[\s\S]*?(?:END|$)/g, "[block]"),
      holdBack: 5,
      boundary: /\s/,
      // A block running across the cut (not ended, or ended after it) is held from its BEGIN.
      holdFrom: (t, cut) => {
        const begin = t.lastIndexOf("BEGIN", cut - 1);
        if (begin < 0) return cut;
        const end = t.indexOf("END", begin);
        return end < 0 || end + 3 > cut ? begin : cut;
      },
    };
    const source = "keep this BEGIN secret one\nsecret two END and this";
    for (let at = 1; at < source.length; at++) {
      for (const chunks of [cutAt(source, [at]), cutAt(source, [at, Math.min(source.length - 1, at + 7)])]) {
        const events = await collect(transformText(upstream(chunks), block));
        expect(deltasOf(events).some((d) => d.includes("secret"))).toBe(false);
        expect(resultOf(events).output).toBe("keep this [block] and this");
      }
    }
  });

  it("calls the transform once per piece, on consecutive pieces that add up to the text", async () => {
    const pieces: string[] = [];
    const options: TextTransformOptions = { transform: (t) => (pieces.push(t), t), holdBack: 4 };
    const source = "one two three four five six seven eight nine ten";

    const events = await collect(transformText(upstream(source.split(/(?<= )/)), options));

    expect(pieces.join("")).toBe(source);
    expect(pieces.length).toBeGreaterThan(1);
    expect(deltasOf(events)).toEqual(pieces);
  });
});

describe("transformText: how the run ends", () => {
  it("passes started first and flushes what is held before completed", async () => {
    const events = await collect(transformText(upstream(["hi ann@exam", "ple.com"]), emails));

    // "hi " can go as soon as it is followed by a boundary; the address only once the run is complete.
    expect(events).toEqual([
      { type: "started", model: "m" },
      { type: "delta", text: "hi " },
      { type: "delta", text: "<email>" },
      { type: "completed", result: expect.anything() },
    ]);
    expect(resultOf(events)).toMatchObject({ output: "hi <email>", success: true, model: "echo-1", usage: { inputTokens: 3, outputTokens: 5 } });
  });

  it("flushes what is held when the stream ends without a result", async () => {
    async function* cut(): AsyncIterable<RunEvent> {
      yield { type: "started", model: "m" };
      yield { type: "delta", text: "to ann@example" };
      yield { type: "delta", text: ".com" };
    }
    const events = await collect(transformText(cut(), emails));

    expect(events.map((e) => e.type)).toEqual(["started", "delta", "delta"]);
    expect(deltasOf(events)).toEqual(["to ", "<email>"]);
  });

  it("flushes what is held, transformed, when the upstream fails, then rethrows its error", async () => {
    const down = new ConnectError("provider down", Code.Unavailable);
    async function* failing(): AsyncIterable<RunEvent> {
      yield { type: "started", model: "m" };
      yield { type: "delta", text: "to ann@exa" };
      yield { type: "delta", text: "mple.com" };
      throw down;
    }
    const seen: RunEvent[] = [];

    await expect(
      (async () => {
        for await (const event of transformText(failing(), emails)) seen.push(event);
      })(),
    ).rejects.toBe(down);
    expect(deltasOf(seen)).toEqual(["to ", "<email>"]);
  });

  it("a holdFrom that throws ends the run the same way: held text flushed transformed, then its error", async () => {
    const refused = new ConnectError("too long", Code.ResourceExhausted);
    const options: TextTransformOptions = {
      transform: (t) => t.replace(/BEGIN[\s\S]*/g, "[block]"),
      holdBack: 2,
      holdFrom: (t) => {
        if (t.includes("BEGIN")) throw refused;
        return t.length;
      },
    };
    const seen: RunEvent[] = [];

    await expect(
      (async () => {
        for await (const event of transformText(upstream(["safe ", "text ", "BEGIN key material ", "more ", "more"]), options)) seen.push(event);
      })(),
    ).rejects.toBe(refused);
    expect(deltasOf(seen).join("")).toBe("safe text [block]");
  });

  it("closes the upstream when the consumer abandons the stream, with text still held", async () => {
    let closed = false;
    let pulled = 0;
    async function* endless(): AsyncIterable<RunEvent> {
      try {
        yield { type: "started", model: "m" };
        for (;;) {
          pulled++;
          yield { type: "delta", text: `word${pulled} ` };
        }
      } finally {
        closed = true;
      }
    }

    for await (const event of transformText(endless(), { ...emails, holdBack: 30 })) {
      if (event.type === "delta") break;
    }

    expect(closed).toBe(true);
    expect(pulled).toBeLessThan(50);
  });

  it("closes the upstream when abandoned before any text was released", async () => {
    let closed = false;
    async function* slow(): AsyncIterable<RunEvent> {
      try {
        yield { type: "started", model: "m" };
        yield { type: "delta", text: "held" };
        yield { type: "delta", text: " still held" };
      } finally {
        closed = true;
      }
    }
    const it = transformText(slow(), { ...emails, holdBack: 100 })[Symbol.asyncIterator]();

    expect((await it.next()).value).toEqual({ type: "started", model: "m" });
    await it.return?.();

    expect(closed).toBe(true);
  });
});

describe("transformText: the completed result", () => {
  it("the output is the emitted deltas joined, and the completed hook has the last say", async () => {
    const options: TextTransformOptions = {
      ...emails,
      completed: (result) => ({ ...result, metadata: { ...result.metadata, masked: "yes" } }),
    };
    const events = await collect(transformText(upstream(["a@b.io ", "and c@d.io"]), options));

    expect(resultOf(events).output).toBe(deltasOf(events).join(""));
    expect(resultOf(events).metadata).toEqual({ masked: "yes" });
  });

  it("an upstream that answered with no deltas gets its output transformed and streamed as one delta", async () => {
    const events = await collect(transformText(upstream([], "cached: ann@example.com"), emails));

    expect(deltasOf(events)).toEqual(["cached: <email>"]);
    expect(resultOf(events).output).toBe("cached: <email>");
  });

  it("an output that only extends the deltas streams the rest as a last delta", async () => {
    const events = await collect(transformText(upstream(["hello "], "hello and ann@example.com"), emails));

    expect(deltasOf(events).join("")).toBe("hello and <email>");
    expect(resultOf(events).output).toBe("hello and <email>");
  });

  it("an output that contradicts text already streamed loses to it: unary and stream agree", async () => {
    const events = await collect(transformText(upstream(["one ", "two"], "something else"), emails));

    expect(deltasOf(events).join("")).toBe("one two");
    expect(resultOf(events).output).toBe("one two");
  });

  it("maxHold bounds what is held: past it, text is released even without a boundary", async () => {
    const word = "x".repeat(500);
    const events = await collect(transformText(upstream(word.match(/.{1,10}/g)!), { ...emails, maxHold: 100 }));

    const deltas = deltasOf(events);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.slice(0, -1).join("").length).toBeGreaterThanOrEqual(500 - 100 - 10);
    expect(deltas.join("")).toBe(word);
  });
});
