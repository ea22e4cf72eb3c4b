// A Markdown file cut into its headings' sections, with their fenced code blocks and
// line numbers: tests that run what the README shows find its lines here, and name
// the line when one stops working.

/** A fenced code block (```lang ... ```). */
export interface FencedBlock {
  /** The info string's first word: sh, python... */
  lang: string;
  /** 1-based line number of the block's first line of code. */
  line: number;
  code: string;
  /** The section's prose between the previous block (or the heading) and this block. */
  before: string;
}

/** What one heading covers, up to the next heading of any level. */
export interface Section {
  title: string;
  /** This heading and the headings it sits under, outermost first. */
  path: string[];
  /** 1-based line number of the heading. */
  line: number;
  /** The lines outside fenced blocks. */
  prose: string;
  blocks: FencedBlock[];
}

/** The file's sections in order; a `#` line inside a fence is code, not a heading. */
export function markdownSections(markdown: string): Section[] {
  const sections: Section[] = [];
  const path: string[] = [];
  let section: Section | undefined;
  let fence: { marker: string; block: FencedBlock; code: string[] } | undefined;
  let before: string[] = [];
  for (const [i, text] of markdown.split("\n").entries()) {
    if (fence) {
      if (text.trim() === fence.marker) {
        fence.block.code = fence.code.join("\n");
        section?.blocks.push(fence.block);
        fence = undefined;
      } else {
        fence.code.push(text);
      }
      continue;
    }
    const opening = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/.exec(text);
    if (opening) {
      fence = { marker: opening[1]!, block: { lang: opening[2]!, line: i + 2, code: "", before: before.join("\n") }, code: [] };
      before = [];
      continue;
    }
    const heading = /^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$/.exec(text);
    if (heading) {
      path.length = heading[1]!.length - 1;
      path[heading[1]!.length - 1] = heading[2]!;
      section = { title: heading[2]!, path: path.filter((p) => p !== undefined), line: i + 1, prose: "", blocks: [] };
      sections.push(section);
      before = [];
      continue;
    }
    before.push(text);
    if (section) section.prose += `${text}\n`;
  }
  return sections;
}

/** The one section titled `title` (under a heading titled `parent`, if given); throws naming what it looked for. */
export function sectionTitled(sections: Section[], title: string, parent?: string): Section {
  const found = sections.filter((s) => s.title === title && (parent === undefined || s.path.includes(parent)));
  if (found.length !== 1) throw new Error(`expected one heading "${title}"${parent ? ` under "${parent}"` : ""}, found ${found.length}`);
  return found[0]!;
}
