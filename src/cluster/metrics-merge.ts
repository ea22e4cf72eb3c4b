/**
 * Merges the Prometheus text of several workers into one exposition: each
 * family once (its HELP and TYPE from the first worker that has it), every
 * sample labelled with the worker it came from. Prometheus refuses a family
 * whose TYPE appears twice, so the texts cannot just be concatenated.
 */
export function mergeMetrics(texts: readonly { worker: number; text: string }[]): string {
  const families = new Map<string, { meta: string[]; samples: string[] }>();
  for (const { worker, text } of texts) {
    let current: { meta: string[]; samples: string[] } | undefined;
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        const name = meta[2]!;
        let family = families.get(name);
        if (!family) families.set(name, (family = { meta: [], samples: [] }));
        // The first worker's HELP and TYPE stand for all: they are the same code's.
        if (!family.meta.some((m) => m.startsWith(`# ${meta[1]} `))) family.meta.push(line);
        current = family;
        continue;
      }
      if (line.startsWith("#")) continue;
      if (!current) {
        // A sample before any HELP/TYPE: a family of its own, named by the sample.
        const name = /^[^\s{]+/.exec(line)?.[0] ?? line;
        if (!families.has(name)) families.set(name, { meta: [], samples: [] });
        current = families.get(name)!;
      }
      current.samples.push(labelled(line, worker));
    }
  }
  const out: string[] = [];
  for (const { meta, samples } of families.values()) out.push(...meta, ...samples);
  return out.length ? `${out.join("\n")}\n` : "";
}

/** `line` (a sample: `name{labels} value` or `name value`) with a `worker` label first among its labels. */
function labelled(line: string, worker: number): string {
  const label = `worker="${worker}"`;
  const brace = line.indexOf("{");
  const space = line.indexOf(" ");
  if (brace >= 0 && (space < 0 || brace < space)) {
    const empty = line[brace + 1] === "}";
    return `${line.slice(0, brace + 1)}${label}${empty ? "" : ","}${line.slice(brace + 1)}`;
  }
  return space < 0 ? line : `${line.slice(0, space)}{${label}}${line.slice(space)}`;
}
