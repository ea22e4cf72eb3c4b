import { type AgentRunResult, Code, ConnectError, type Middleware, type RunEvent } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { DETECTORS } from "../../../src/plugins/builtin/redact/detectors.ts";
import redactPlugin from "../../../src/plugins/builtin/redact/plugin.ts";
import { agentContext, collect, parseOptions, runResult, setUpPlugin } from "../../support/plugin-context.ts";

/** One sample per built-in detector: the text around it, and the secret that must not get through. */
const SAMPLES: Record<string, { text: string; secret: string }> = {
  email: { text: "write to ann.lee+work@mail.example.co.uk today", secret: "ann.lee+work@mail.example.co.uk" },
  phone: { text: "call 555 123 4567 after nine", secret: "555 123 4567" },
  creditCard: { text: "card 4111 1111 1111 1111 on file", secret: "4111 1111 1111 1111" },
  apiKey: { text: "export OPENAI_API_KEY=sk-proj-Zx81kLmQ2vRt7YwE4pNc9AbD", secret: "sk-proj-Zx81kLmQ2vRt7YwE4pNc9AbD" },
  awsAccessKey: { text: "aws_access_key_id = AKIAIOSFODNN7EXAMPLE", secret: "AKIAIOSFODNN7EXAMPLE" },
  githubToken: { text: "token ghp_R2d2C3poBb8Yoda0Luke1Leia2Han3Solo4X ok", secret: "ghp_R2d2C3poBb8Yoda0Luke1Leia2Han3Solo4X" },
  slackToken: { text: "SLACK=xoxb-2048-9731-QwErTyUiOp", secret: "xoxb-2048-9731-QwErTyUiOp" },
  bearerToken: { text: "Authorization: Bearer 9f8e7d6c5b4a39281706fedc", secret: "9f8e7d6c5b4a39281706fedc" },
  jwt: { text: "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.Zm9vYmFyYmF6cXV4 end", secret: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.Zm9vYmFyYmF6cXV4" },
  privateKey: {
    text: "here:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\nQmFzZTY0S2V5TWF0ZXJpYWw=\n-----END OPENSSH PRIVATE KEY-----\ndone",
    secret: "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU=",
  },
};

/** Runs the middleware once over a run made of `chunks`, as the executor would. */
async function run(
  mw: Middleware,
  chunks: readonly string[],
  task = "hello",
): Promise<{ events: RunEvent[]; deltas: string[]; result: AgentRunResult; seenTask: string }> {
  const ctx = agentContext({ task });
  let seenTask = "";
  async function* terminal(): AsyncIterable<RunEvent> {
    seenTask = ctx.task;
    yield { type: "started", model: "echo-1" };
    for (const text of chunks) yield { type: "delta", text };
    yield { type: "completed", result: runResult(chunks.join("")) };
  }
  const events = await collect(mw.process(ctx, terminal));
  const last = events.at(-1);
  if (last?.type !== "completed") throw new Error("no result");
  return { events, deltas: events.flatMap((e) => (e.type === "delta" ? [e.text] : [])), result: last.result, seenTask };
}

/** `text` cut at the given offsets. */
const cutAt = (text: string, offsets: readonly number[]) => [0, ...offsets].map((from, i) => text.slice(from, offsets[i] ?? text.length));
const inParts = (text: string, n: number) =>
  cutAt(
    text,
    Array.from({ length: n - 1 }, (_, i) => Math.round(((i + 1) * text.length) / n)),
  );

describe("redact: the built-in detectors", () => {
  for (const [name, { text, secret }] of Object.entries(SAMPLES)) {
    it(`redacts ${name}`, async () => {
      const mw = await setUpPlugin(redactPlugin, undefined);
      const { result, deltas } = await run(mw, [text]);

      expect(result.output).toContain(`[REDACTED:${name}]`);
      expect(result.output).not.toContain(secret);
      expect(deltas.join("")).toBe(result.output);
      expect(result.metadata).toMatchObject({ redactions: "1", [`redactions.${name}`]: "1" });
    });
  }

  it("keeps the text around a match", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const { result } = await run(mw, ["mail ann@example.com or call (555) 123-4567, thanks"]);

    expect(result.output).toBe("mail [REDACTED:email] or call [REDACTED:phone], thanks");
  });

  it("redacts only card numbers that pass the Luhn check", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const { result } = await run(mw, ["valid 4111111111111111, amex 3782 822463 10005, invalid 4111111111111112"]);

    expect(result.output).toBe("valid [REDACTED:creditCard], amex [REDACTED:creditCard], invalid 4111111111111112");
    expect(result.metadata["redactions.creditCard"]).toBe("2");
  });

  it("leaves ordinary text alone and says so: redactions 0", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const text = "The quarterly report: revenue rose 12% to $4.5 million in Q3 2024 (version 1.2.3), see page 42.";
    const { result } = await run(mw, [text]);

    expect(result.output).toBe(text);
    expect(result.metadata).toEqual({ redactions: "0" });
  });

  it("a detector turned off is not applied", async () => {
    const mw = await setUpPlugin(redactPlugin, { detectors: { email: false } });
    const { result } = await run(mw, ["ann@example.com 555-123-4567"]);

    expect(result.output).toBe("ann@example.com [REDACTED:phone]");
  });

  it("uses the replacement template", async () => {
    const mw = await setUpPlugin(redactPlugin, { replacement: "<{name} removed>" });
    const { result } = await run(mw, ["to ann@example.com"]);

    expect(result.output).toBe("to <email removed>");
  });

  it("no built-in quantifies a group that holds an unbounded quantifier (the shape that backtracks catastrophically)", () => {
    // The check itself, on shapes it must and must not flag.
    expect(nestedUnboundedQuantifier(String.raw`(a+)+`)).toBe("(a+)+");
    expect(nestedUnboundedQuantifier(String.raw`x(?:[\w-]{2,}\.)*y`)).toBe(String.raw`(?:[\w-]{2,}\.)*`);
    expect(nestedUnboundedQuantifier(String.raw`(?:\d{1,4}[ .-]?){2}(a|b+)`)).toBeUndefined();

    for (const d of DETECTORS) expect(nestedUnboundedQuantifier(d.source), d.name).toBeUndefined();
  });
});

describe("redact: secrets split across deltas", () => {
  const secrets = Object.values(SAMPLES).map((s) => s.secret);
  const text = Object.values(SAMPLES)
    .map((s) => s.text)
    .join(" and ");

  async function check(mw: Middleware, chunks: string[], whole: string, label: string) {
    const { deltas, result } = await run(mw, chunks);
    for (const secret of secrets) {
      expect(
        deltas.some((d) => d.includes(secret)),
        `${label}: a delta holds ${secret}`,
      ).toBe(false);
    }
    expect(deltas.join(""), label).toBe(whole);
    expect(result.output, label).toBe(whole);
  }

  it("the whole text in one delta is the reference", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const { result } = await run(mw, [text]);

    for (const secret of secrets) expect(result.output).not.toContain(secret);
    expect(result.metadata.redactions).toBe(String(secrets.length));
  });

  it("split across 2 deltas, at every offset, no secret reaches the client and the answer is the same", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const whole = (await run(mw, [text])).result.output;
    for (let at = 1; at < text.length; at++) await check(mw, cutAt(text, [at]), whole, `split at ${at}`);
  });

  it("split across 3 deltas", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const whole = (await run(mw, [text])).result.output;
    for (let a = 1; a < text.length - 1; a += 7) {
      for (let b = a + 1; b < text.length; b += 5) await check(mw, cutAt(text, [a, b]), whole, `split at ${a}, ${b}`);
    }
  });

  it("split across 10 deltas, word by word, and one character at a time", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const whole = (await run(mw, [text])).result.output;
    await check(mw, inParts(text, 10), whole, "10 parts");
    await check(mw, text.split(/(?<=\s)/), whole, "words");
    await check(mw, [...text], whole, "characters");
  });

  it("a phone number that spans deltas and spaces (as the echo provider streams it) is caught", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const { deltas, result } = await run(mw, ["[history=0] ", "call ", "555 ", "123 ", "4567"]);

    expect(deltas.join("")).toBe("[history=0] call [REDACTED:phone]");
    expect(result.output).toBe("[history=0] call [REDACTED:phone]");
    expect(result.metadata["redactions.phone"]).toBe("1");
  });

  it("a long answer is released while it streams, holding back only the end", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const words = `${"a fairly ordinary sentence of prose. ".repeat(30)}mail ann@example.com`.split(/(?<=\s)/);
    const { events, result } = await run(mw, words);

    // Text reaches the client before the run ends, not in one block at the end.
    const firstDelta = events.findIndex((e) => e.type === "delta");
    expect(events.filter((e) => e.type === "delta").length).toBeGreaterThan(5);
    expect(firstDelta).toBe(1);
    expect(result.output.endsWith("mail [REDACTED:email]")).toBe(true);
  });
});

describe("redact: custom patterns", () => {
  it("applies custom patterns, with their flags and replacement, and counts them by name", async () => {
    const mw = await setUpPlugin(redactPlugin, {
      patterns: [
        { name: "ticket", pattern: String.raw`TICKET-\d{6}` },
        { name: "codeword", pattern: "open sesame", flags: "i", replacement: "[hush]" },
      ],
    });
    const { result } = await run(mw, ["see TICKET-123456 and say Open Sesame, and ticket-123456 stays"]);

    expect(result.output).toBe("see [REDACTED:ticket] and say [hush], and ticket-123456 stays");
    expect(result.metadata).toMatchObject({ redactions: "2", "redactions.ticket": "1", "redactions.codeword": "1" });
  });

  it("a custom pattern spanning deltas is caught within holdBack", async () => {
    const mw = await setUpPlugin(redactPlugin, { patterns: [{ name: "codeword", pattern: "open sesame now", flags: "i" }] });
    const text = "and then: Open Sesame Now, said the thief";
    for (let at = 1; at < text.length; at++) {
      const { deltas } = await run(mw, cutAt(text, [at]));
      expect(deltas.join("")).toBe("and then: [REDACTED:codeword], said the thief");
    }
  });

  it("refuses a bad regular expression at options validation, naming the entry", async () => {
    const parsed = await parseOptions(redactPlugin, {
      patterns: [
        { name: "ok", pattern: "a+" },
        { name: "broken", pattern: "(unclosed" },
      ],
    });

    expect(parsed.success).toBe(false);
    expect(!parsed.success && parsed.error).toMatch(/ options\.patterns\.1\.pattern: pattern "broken" is not a valid regular expression/);
  });

  it("refuses patterns that match the empty string, bad flags, and names already taken", async () => {
    const empty = await parseOptions(redactPlugin, { patterns: [{ name: "nothing", pattern: "x*" }] });
    const flags = await parseOptions(redactPlugin, { patterns: [{ name: "global", pattern: "x", flags: "g" }] });
    const taken = await parseOptions(redactPlugin, {
      patterns: [
        { name: "email", pattern: "x" },
        { name: "input", pattern: "y" },
      ],
    });

    expect(!empty.success && empty.error).toMatch(/patterns\.0\.pattern: pattern "nothing" matches the empty string/);
    expect(!flags.success && flags.error).toMatch(/patterns\.0\.flags: may hold only i, m, s and u/);
    expect(!taken.success && taken.error).toMatch(/patterns\.0\.name: "email" is taken/);
    expect(!taken.success && taken.error).toMatch(/patterns\.1\.name: "input" is taken/);
  });

  it("works named bare: every option has a default; unknown keys are refused", async () => {
    const bare = await parseOptions(redactPlugin, undefined);
    const unknown = await parseOptions(redactPlugin, { holdback: 10 });
    const small = await parseOptions(redactPlugin, { holdBack: 10 });

    expect(bare).toMatchObject({ success: true, data: { input: false, holdBack: 64, maxHold: 65536, replacement: "[REDACTED:{name}]", patterns: [] } });
    expect(bare.success && Object.values(bare.data.detectors).every((on) => on === true)).toBe(true);
    expect(!unknown.success && unknown.error).toMatch(/unknown key "holdback"/);
    expect(!small.success && small.error).toMatch(/ options\.holdBack: /);
  });
});

describe("redact: the task", () => {
  it("with input: true the model is asked the redacted task, and the count is in metadata", async () => {
    const mw = await setUpPlugin(redactPlugin, { input: true });
    const { seenTask, result } = await run(mw, ["ok"], "my card is 4111 1111 1111 1111, mail ann@example.com");

    expect(seenTask).toBe("my card is [REDACTED:creditCard], mail [REDACTED:email]");
    expect(result.metadata).toMatchObject({ redactions: "0", "redactions.input": "2" });
  });

  it("by default the task reaches the model as it was", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const { seenTask, result } = await run(mw, ["ok"], "mail ann@example.com");

    expect(seenTask).toBe("mail ann@example.com");
    expect(result.metadata["redactions.input"]).toBeUndefined();
  });
});

describe("redact: how a run ends", () => {
  it("flushes what it holds, redacted, before an upstream error reaches the client", async () => {
    const mw = await setUpPlugin(redactPlugin, {});
    const down = new ConnectError("provider down", Code.Unavailable);
    async function* failing(): AsyncIterable<RunEvent> {
      yield { type: "started", model: "echo-1" };
      yield { type: "delta", text: "reach me at ann@exa" };
      yield { type: "delta", text: "mple.com" };
      throw down;
    }
    const seen: string[] = [];

    await expect(
      (async () => {
        for await (const e of mw.process(agentContext(), failing)) if (e.type === "delta") seen.push(e.text);
      })(),
    ).rejects.toBe(down);
    expect(seen.join("")).toBe("reach me at [REDACTED:email]");
  });

  it("a private key still open past maxHold ends the call; the text before it and the redacted block were sent", async () => {
    const mw = await setUpPlugin(redactPlugin, { maxHold: 1024 });
    const keyLine = "QmFzZTY0S2V5TWF0ZXJpYWxRbUZ6WlRZMFMyVjVUV0YwWlhKcFlXdz0K\n";
    const chunks = ["intro text\n", "-----BEGIN RSA PRIVATE KEY-----\n", ...Array.from({ length: 40 }, () => keyLine)];
    const seen: string[] = [];

    const err = await (async () => {
      for await (const e of mw.process(agentContext(), async function* (): AsyncIterable<RunEvent> {
        yield { type: "started", model: "echo-1" };
        for (const text of chunks) yield { type: "delta", text };
        yield { type: "completed", result: runResult(chunks.join("")) };
      })) {
        if (e.type === "delta") seen.push(e.text);
      }
    })().catch((e: unknown) => e as ConnectError);

    expect(err).toBeInstanceOf(ConnectError);
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.rawMessage).toMatch(/privateKey match runs past maxHold \(1024 characters\)/);
    expect(seen.join("")).toBe("intro text\n[REDACTED:privateKey]");
  });
});

/**
 * The first group of a regular expression source that is itself quantified and
 * holds an unbounded quantifier (*, + or {n,}), or undefined. A small scanner:
 * escapes and character classes are skipped.
 */
function nestedUnboundedQuantifier(source: string): string | undefined {
  const groups: { at: number; unbounded: boolean }[] = [];
  let closed: { at: number; unbounded: boolean } | undefined;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    const justClosed = closed;
    closed = undefined;
    if (c === "\\") {
      i++;
    } else if (c === "[") {
      while (source[i] !== "]") i += source[i] === "\\" ? 2 : 1;
    } else if (c === "(") {
      groups.push({ at: i, unbounded: false });
    } else if (c === ")") {
      closed = groups.pop()!;
      if (closed.unbounded && groups.length) groups.at(-1)!.unbounded = true;
    } else if (c === "*" || c === "+" || c === "?" || (c === "{" && /^\{\d+(,\d*)?\}/.test(source.slice(i)))) {
      if (justClosed?.unbounded) return source.slice(justClosed.at, i + 1);
      if ((c === "*" || c === "+" || /^\{\d+,\}/.test(source.slice(i))) && groups.length) groups.at(-1)!.unbounded = true;
      if (c === "{") i = source.indexOf("}", i);
    }
  }
  return undefined;
}
