import type { ChatMessage } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { startAtUserMessage, withinTokenBudget } from "../../src/sessions/history.ts";
import { withinTokenBudget as fromManager } from "../../src/sessions/manager.ts";

const user = (content: string): ChatMessage => ({ role: "user", content });
const answer = (content: string): ChatMessage => ({ role: "assistant", content });
const calls = (args: string): ChatMessage => ({ role: "assistant", content: "", toolCalls: [{ id: "c1", name: "w", arguments: args }] });
const result = (content: string): ChatMessage => ({ role: "tool", content, toolCallId: "c1" });

describe("history trimming", () => {
  it("counts a tool call's id, name and arguments and a result's call id against the token budget, 4 characters a token", () => {
    // "abc": 1 token; the call: 2 + 1 + 36 characters, 10 tokens (9 for its arguments alone);
    // the result: 4 + 2, 2 tokens (1 for its content alone); "done": 1. In all 14.
    const turn = [user("abc"), calls(`{"city":"${"x".repeat(25)}"}`), result("okay"), answer("done")];
    expect(withinTokenBudget(turn, 14)).toEqual(turn);
    // One short: the question does not fit, and the rest is no whole turn.
    expect(withinTokenBudget(turn, 13)).toEqual([]);
  });

  it("drops a tool result whose call did not fit, and the rest of that turn, rather than send it alone", () => {
    const history = [user("q1"), calls("x".repeat(400)), result("r1"), answer("a1"), user("q2"), answer("a2")];
    expect(withinTokenBudget(history, 10)).toEqual([user("q2"), answer("a2")]);
    expect(withinTokenBudget(history, 1000)).toEqual(history);
  });

  it("is empty when what fits holds no user message", () => {
    expect(withinTokenBudget([user("q".repeat(100)), calls("{}"), result("r"), answer("a")], 5)).toEqual([]);
  });

  it("starts a window at its first user message, leaving a window that starts there as it is", () => {
    const whole = [user("q"), calls("{}"), result("r"), answer("a")];
    expect(startAtUserMessage(whole)).toBe(whole);
    expect(startAtUserMessage([result("r"), answer("a"), ...whole])).toEqual(whole);
    expect(startAtUserMessage([result("r"), answer("a")])).toEqual([]);
    expect(startAtUserMessage([])).toEqual([]);
  });

  it("is the same function agent limits import from the session manager", () => {
    expect(fromManager).toBe(withinTokenBudget);
  });
});
