// The built-in detectors. Each is a regular expression source with no
// capturing groups (the scanner wraps each in one to tell them apart) and no
// quantified group holding an unbounded quantifier, so no input makes one
// backtrack more than a bounded amount per position. Most start with a
// one-character lookbehind, so they are tried only where a token starts.
//
// TOKEN_CHARS is every character a single-token detector (an address, a key)
// can contain. A piece of streamed text is cut only just after a character
// outside it (see BOUNDARY), so a token is never split, and a lookbehind at the
// start of a piece sees what it would have seen in the whole text. Detectors
// that span several tokens (a phone number with spaces, "Bearer <token>", a PEM
// block) are kept whole by the scanner's holdFrom instead.

/** One built-in detector. */
export interface Detector {
  /** Its name in options, in the replacement and in metadata (`redactions.<name>`). */
  readonly name: BuiltinName;
  readonly source: string;
  /** A second check on a match (Luhn for card numbers); a match failing it is left as it is. */
  readonly valid?: (match: string) => boolean;
}

/** The names of the built-in detectors, in the order they are tried at one position. */
export const BUILTIN_NAMES = [
  "privateKey",
  "bearerToken",
  "jwt",
  "apiKey",
  "awsAccessKey",
  "githubToken",
  "slackToken",
  "email",
  "creditCard",
  "phone",
] as const;
/** A built-in detector's name. */
export type BuiltinName = (typeof BUILTIN_NAMES)[number];

const TOKEN_CHARS = String.raw`\w.%+\-@/=~`;
/** One character a piece may end after: anything no single-token detector contains. */
export const BOUNDARY = new RegExp(`[^${TOKEN_CHARS}]`);

// Longest text any built-in needs to see from a match's start to decide it when it spans
// tokens: a PEM header (≈51), a phone number (≈27), "Bearer" + blanks + 16 token characters (30).
/** Smallest holdBack the built-ins are exact with. */
export const MIN_HOLD_BACK = 64;

const SOURCES: Record<BuiltinName, string> = {
  // To its END line, or to the end of the text while that line has not come yet: a
  // block cut short (or still streaming) is redacted whole, never left half-visible.
  privateKey: String.raw`-----BEGIN[A-Z0-9 ]{0,24}PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z0-9 ]{0,24}PRIVATE KEY-----|$)`,
  // The whole "Bearer <token>", not the token alone behind a lookbehind: a piece starting
  // at the token would no longer see the word before it.
  bearerToken: String.raw`(?<![\w-])(?:[Bb]earer|BEARER)[ \t]{1,8}[\w.~+/-]{16,}=*`,
  jwt: String.raw`(?<![\w.-])eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*`,
  // sk-..., sk-proj-..., sk-ant-...: the prefix's dashes are in the class.
  apiKey: String.raw`(?<![\w-])sk-[\w-]{20,}`,
  awsAccessKey: String.raw`(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])`,
  githubToken: String.raw`(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})`,
  slackToken: String.raw`(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,}`,
  // The domain's class holds the dots, so one greedy run backtracks to the last ".tld": bounded by 253.
  email: String.raw`(?<![\w.%+-])[\w.%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}(?![A-Za-z0-9])`,
  // 13-19 digits together, in groups of four (Visa, Mastercard...), or 4-6-5 (Amex).
  creditCard: String.raw`(?<![\d.])(?:\d{13,19}|\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5})(?!\d)`,
  // International with a leading +, or North American (optionally 1-prefixed) 3-3-4.
  phone:
    String.raw`(?<![\d.])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})[ .-]?\d{2,4}[ .-]?\d{2,4}(?:[ .-]?\d{2,4})?` +
    String.raw`|(?:1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4})(?!\d)`,
};

/** Whether a card-shaped number passes the Luhn check (and has 13-19 digits). */
function luhn(text: string): boolean {
  let sum = 0;
  let digits = 0;
  for (let i = text.length - 1; i >= 0; i--) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) continue;
    sum += digits++ % 2 ? (d * 2 > 9 ? d * 2 - 9 : d * 2) : d;
  }
  return digits >= 13 && digits <= 19 && sum % 10 === 0;
}

/** Every built-in detector, in BUILTIN_NAMES order. */
export const DETECTORS: readonly Detector[] = BUILTIN_NAMES.map((name) => ({
  name,
  source: SOURCES[name],
  ...(name === "creditCard" ? { valid: luhn } : {}),
}));
