// Sessions remember tool use (issue #16, item 6): every store gives back the
// assistant's tool calls and the tool results exactly as a turn stored them,
// and a message without tool fields as {role, content} alone. Run against each
// store by its own test file, like store-contract.ts.
import type { ChatMessage } from "@qingyu/plugin-api";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import { SessionManager } from "../../src/sessions/manager.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import type { StoreFactory } from "./store-contract.ts";

const ALL = { messages: 10_000 };

/**
 * A turn that used two tools: the question, the assistant's two calls, their
 * results, the answer. The texts hold what encoders treat specially: quotes,
 * backslashes, a slash (Lua's cjson writes \/), a written-out \u0000, non-ASCII.
 */
export function toolTurn(i: number): ChatMessage[] {
  return [
    { role: "user", content: `what is the weather in Zürich and Köln? (${i})` },
    {
      role: "assistant",
      content: "",
      toolCalls: [
        { id: `call_${i}_a`, name: "weather", arguments: `{"city":"Zürich","path":"a/b","note":"say \\"hi\\" \\\\u0000 🌦"}` },
        { id: `call_${i}_b`, name: "weather", arguments: '{"city":"Köln"}' },
      ],
    },
    { role: "tool", content: '{"temp":21,"sky":"sunny/clear"}', toolCallId: `call_${i}_a` },
    { role: "tool", content: "error: station offline", toolCallId: `call_${i}_b` },
    { role: "assistant", content: `Zürich is 21 °C; Köln's station is offline (${i}).` },
  ];
}

/** Registers the tool-message suite for one store. */
export function toolMessagesContract(name: string, factory: StoreFactory): void {
  const withStore = (fn: (store: SessionStore) => Promise<void>) => async () => {
    const store = await factory.make();
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  };
  const input = { userId: `tools-${process.pid}`, agentId: "helper", metadata: {}, ttlSeconds: 600 };

  describe(`${name}: sessions remember tool use`, () => {
    it(
      "reads a turn with tool calls and tool results back exactly, and messages without them as {role, content} only",
      withStore(async (store) => {
        const s = await store.create(input);
        await store.appendMessages(s.id, [
          { role: "user", content: "hello" },
          { role: "assistant", content: "hi" },
        ]);
        await store.appendMessages(s.id, toolTurn(1));
        const expected = [{ role: "user", content: "hello" }, { role: "assistant", content: "hi" }, ...toolTurn(1)];
        // toStrictEqual: a key set to undefined (or an empty toolCalls) would fail where toEqual passes.
        expect((await store.get(s.id, ALL))!.messages).toStrictEqual(expected);
        expect((await store.get(s.id, { messages: 4 }))!.messages).toStrictEqual(toolTurn(1).slice(1));
        // Read again: a store that caches (the tiered store's copy) serves the second read differently.
        expect((await store.get(s.id, ALL))!.messages).toStrictEqual(expected);
        expect(await store.get(s.id, ALL)).toMatchObject({ version: 2, messageCount: 7 });
      }),
    );

    it(
      "keeps an empty list of tool calls and an empty tool call id as they were given",
      withStore(async (store) => {
        const s = await store.create(input);
        const odd: ChatMessage[] = [
          { role: "assistant", content: "nothing to call", toolCalls: [] },
          { role: "tool", content: "", toolCallId: "" },
        ];
        await store.appendMessages(s.id, odd);
        await store.appendMessages(s.id, [{ role: "user", content: "next" }]);
        expect((await store.get(s.id, ALL))!.messages).toStrictEqual([...odd, { role: "user", content: "next" }]);
      }),
    );

    it(
      "gives the next turn's prompt the tool turn whole, through the session manager",
      withStore(async (store) => {
        const manager = new SessionManager(store, new MemoryEventBus(pino({ level: "silent" })), {
          ttlSeconds: 600,
          maxTtlSeconds: 3600,
          historyMessages: 50,
          historyTokens: 0,
          getMessagesLimit: 200,
          maxCheckpointBytes: 1024,
          checkpointsKept: 5,
          defaultPageSize: 10,
          maxPageSize: 10,
        });
        const s = await manager.create("alice", "helper", {}, 0);
        await manager.appendTurn(s.id, toolTurn(1));
        await manager.appendTurn(s.id, toolTurn(2));
        expect(manager.recent(await manager.forTurn(s.id))).toStrictEqual([...toolTurn(1), ...toolTurn(2)]);
        expect((await manager.read(s.id, "alice")).messages).toStrictEqual([...toolTurn(1), ...toolTurn(2)]);
      }),
    );
  });
}
