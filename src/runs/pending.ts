import type { Decision, PendingCall } from "./types.ts";

/** The pending list with one call decided; `ready` once none is left undecided (the stores share the rule). */
export function decidePending(
  pending: readonly PendingCall[],
  toolCallId: string,
  decision: Decision,
): { result: "decided" | "already" | "absent"; pending: PendingCall[]; ready: boolean } {
  const i = pending.findIndex((p) => p.call.id === toolCallId);
  if (i < 0) return { result: "absent", pending: [...pending], ready: false };
  if (pending[i]!.decision) return { result: "already", pending: [...pending], ready: false };
  const next = pending.map((p, j) => (j === i ? { ...p, decision } : p));
  return { result: "decided", pending: next, ready: next.every((p) => p.decision) };
}
