import type { CacheStore } from "./store.ts";

/** Settings of the in-process cache. */
export interface MemoryCacheOptions {
  /** Most entries kept; the least recently used goes first. */
  maxEntries: number;
  /** Epoch ms; injected by tests to move time. */
  now?: () => number;
}

interface Slot {
  value: string;
  expiresAt: number;
}

/**
 * An LRU with a TTL per entry, local to the process. Expired entries are
 * dropped when read or when room is needed, so no timer runs.
 */
export class MemoryCache implements CacheStore {
  // A Map iterates in insertion order: re-inserting on use keeps the least recent first.
  private readonly slots = new Map<string, Slot>();
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: MemoryCacheOptions) {
    this.maxEntries = options.maxEntries;
    this.now = options.now ?? (() => Date.now());
  }

  /** Entries currently held (expired ones included until they are noticed). */
  get size(): number {
    return this.slots.size;
  }

  async get(key: string): Promise<string | undefined> {
    const slot = this.slots.get(key);
    if (!slot) return undefined;
    this.slots.delete(key);
    if (slot.expiresAt <= this.now()) return undefined;
    this.slots.set(key, slot);
    return slot.value;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.slots.delete(key);
    this.slots.set(key, { value, expiresAt: this.now() + ttlMs });
    if (this.slots.size > this.maxEntries) this.evict();
  }

  dispose(): void {
    this.slots.clear();
  }

  private evict(): void {
    const now = this.now();
    for (const [key, slot] of this.slots) {
      if (slot.expiresAt <= now) this.slots.delete(key);
    }
    for (const key of this.slots.keys()) {
      if (this.slots.size <= this.maxEntries) break;
      this.slots.delete(key);
    }
  }
}
