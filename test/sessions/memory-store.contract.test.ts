import { MemorySessionStore } from "../../src/sessions/memory-store.ts";
import { storeContract } from "./store-contract.ts";

storeContract("memory", { make: async () => new MemorySessionStore(60_000) });
