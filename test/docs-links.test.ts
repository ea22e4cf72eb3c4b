import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, extname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

// Every relative link in the README and docs/ points at a file of the repository, and a
// `#fragment` into a Markdown file at one of its headings, as GitHub renders them: docs
// that point at a file the repository does not have (a DESIGN.md) fail here, not on a reader.

const ROOT = resolve(import.meta.dirname, "..");
const DOCS = [
  "README.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];

/** A Markdown file's text without fenced code blocks and inline code, where a link is only text. */
function prose(markdown: string): string {
  return markdown.replace(/^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, "").replace(/(`+)[\s\S]*?\1/g, "");
}

/** The targets of inline links and images: `[text](target)` and `[text](target "title")`. */
function linkTargets(markdown: string): string[] {
  const targets: string[] = [];
  for (const match of prose(markdown).matchAll(/!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(match[1]!);
  return targets;
}

/**
 * The anchors GitHub gives a Markdown file's headings: the heading's text, lower case,
 * without punctuation, spaces as hyphens; a repeated one gets -1, -2... Also explicit
 * `<a id>` / `<a name>` anchors.
 */
function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = markdown.replace(/^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, "");
  for (const [, text] of withoutFences.matchAll(/^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$/gm)) {
    const visible = text!
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link's text
      .replace(/<[^>]+>/g, ""); // inline HTML
    const slug = visible
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    found.add(n === 0 ? slug : `${slug}-${n}`);
  }
  for (const [, id] of markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) found.add(id!);
  return found;
}

/** What is wrong with `target` as written in `doc`, or undefined when it resolves. */
function problem(doc: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto: — not the repository's
  const [pathPart, fragment] = target.split("#", 2) as [string, string | undefined];
  const file = pathPart === "" ? join(ROOT, doc) : resolve(ROOT, dirname(doc), decodeURIComponent(pathPart));
  if (!file.startsWith(ROOT)) return "points outside the repository";
  if (!existsSync(file)) return `${relative(ROOT, file)} does not exist`;
  if (fragment === undefined || extname(file) !== ".md" || statSync(file).isDirectory()) return undefined;
  return anchors(readFileSync(file, "utf8")).has(decodeURIComponent(fragment)) ? undefined : `${relative(ROOT, file)} has no heading #${fragment}`;
}

describe("links in README.md and docs/", () => {
  it.each(DOCS)("every relative link in %s resolves", (doc) => {
    const broken = linkTargets(readFileSync(join(ROOT, doc), "utf8"))
      .map((target) => ({ target, problem: problem(doc, target) }))
      .filter((link) => link.problem !== undefined);
    expect(broken).toEqual([]);
  });

  it("reads headings and links as GitHub does", () => {
    const doc = "# Title\n## Sessions that survive\n### Node (`@grpc/grpc-js` with types)\n## Traces, metrics, events\n## Title\n```\n# not a heading\n```\n";
    expect([...anchors(doc)]).toEqual(["title", "sessions-that-survive", "node-grpcgrpc-js-with-types", "traces-metrics-events", "title-1"]);
    expect(linkTargets('[a](docs/x.md#y) `[b](not-a-link)` ![c](img.png "t")\n```\n[d](in-a-fence)\n```\n')).toEqual(["docs/x.md#y", "img.png"]);
  });

  it("finds a link to a file that does not exist, and to a heading that does not", () => {
    expect(problem("README.md", "DESIGN.md")).toBe("DESIGN.md does not exist");
    expect(problem("README.md", "docs/architecture.md#no-such-heading")).toBe("docs/architecture.md has no heading #no-such-heading");
    expect(problem("docs/architecture.md", "../README.md#error-reasons")).toBeUndefined();
  });
});
