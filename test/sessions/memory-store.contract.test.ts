import { MemorySessionStore } from "../../src/sessions/memory-store.ts";
import { storeContract } from "./store-contract.ts";
import { boundsContract } from "./store-bounds-contract.ts";
import { toolMessagesContract } from "./store-tool-messages-contract.ts";

storeContract("memory", { make: async () => new MemorySessionStore(60_000) });
boundsContract("memory", { make: async (maxPageBytes) => new MemorySessionStore(60_000, Date.now, maxPageBytes) });
toolMessagesContract("memory", { make: async () => new MemorySessionStore(60_000) });
