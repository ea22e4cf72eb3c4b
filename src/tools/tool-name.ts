/** What model APIs accept as a tool (function) name: every tool source, and every caller naming one, is held to it. */
export function isToolName(name: string): boolean {
  return /^[A-Za-z0-9_-]{1,64}$/.test(name);
}
