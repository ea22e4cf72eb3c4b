import { z } from "zod";
import { BUILTIN_NAMES, MIN_HOLD_BACK, type BuiltinName } from "./detectors.ts";

/** The metadata key suffix the task's count uses; no custom pattern may take it. */
export const INPUT_KEY = "input";

const on = z.boolean().default(true);

/** Which built-in detectors are on: all of them unless turned off by name. */
const Detectors = z
  .strictObject({
    /** Email addresses. */
    email: on,
    /** Phone numbers: +international, or North American 3-3-4. */
    phone: on,
    /** Card numbers of 13-19 digits that pass the Luhn check. */
    creditCard: on,
    /** OpenAI-style keys: sk-..., sk-proj-... */
    apiKey: on,
    /** AWS access key ids: AKIA..., ASIA... */
    awsAccessKey: on,
    /** GitHub tokens: ghp_/gho_/ghu_/ghs_/ghr_..., github_pat_... */
    githubToken: on,
    /** Slack tokens: xoxb-, xoxp-, xoxa-, xoxo-, xoxr-, xoxs-... */
    slackToken: on,
    /** "Bearer <token>" (a token of 16 characters or more). */
    bearerToken: on,
    /** JSON Web Tokens: eyJ....eyJ.... */
    jwt: on,
    /** PEM private-key blocks, BEGIN line to END line. */
    privateKey: on,
  } satisfies Record<BuiltinName, typeof on>)
  .prefault({});

const Pattern = z.strictObject({
  /** Names the match in the replacement and in metadata. */
  name: z.string().regex(/^[A-Za-z][\w-]{0,63}$/, "must start with a letter and hold only letters, digits, _ and - (at most 64)"),
  /** A JavaScript regular expression's source. */
  pattern: z.string().min(1),
  /** Its flags: any of i, m, s, u (g is added). */
  flags: z
    .string()
    .regex(/^[imsu]*$/, "may hold only i, m, s and u")
    .default(""),
  /** Replaces this pattern's matches; `{name}` is its name. Default: the plugin's replacement. */
  replacement: z.string().optional(),
});

export const RedactOptions = z
  .strictObject({
    detectors: Detectors,
    /** Patterns of your own, tried after the built-ins. */
    patterns: z.array(Pattern).default([]),
    /** What replaces a match; `{name}` is the detector's name. */
    replacement: z.string().default("[REDACTED:{name}]"),
    /** Also redact the task before the rest of the onion (and the model) sees it. */
    input: z.boolean().default(false),
    /** Characters of the answer held back while streaming, so a match split across deltas is seen whole. */
    holdBack: z.int().min(MIN_HOLD_BACK).max(65_536).default(MIN_HOLD_BACK),
    /** Most characters held for one match (a PEM block); a match longer than this ends the call. */
    maxHold: z
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(65_536),
  })
  .superRefine((options, ctx) => {
    const seen = new Set<string>();
    options.patterns.forEach((p, i) => {
      if ((BUILTIN_NAMES as readonly string[]).includes(p.name) || p.name === INPUT_KEY || seen.has(p.name)) {
        ctx.addIssue({
          code: "custom",
          path: ["patterns", i, "name"],
          message: `"${p.name}" is taken (a built-in detector, "${INPUT_KEY}", or an earlier pattern)`,
        });
      }
      seen.add(p.name);
      let re: RegExp;
      try {
        re = new RegExp(p.pattern, p.flags);
      } catch (err) {
        ctx.addIssue({
          code: "custom",
          path: ["patterns", i, "pattern"],
          message: `pattern "${p.name}" is not a valid regular expression: ${(err as Error).message}`,
        });
        return;
      }
      if (re.test("")) ctx.addIssue({ code: "custom", path: ["patterns", i, "pattern"], message: `pattern "${p.name}" matches the empty string` });
    });
    if (options.maxHold < options.holdBack * 2) {
      ctx.addIssue({ code: "custom", path: ["maxHold"], message: `must be at least twice holdBack (${options.holdBack * 2})` });
    }
  })
  .prefault({});
