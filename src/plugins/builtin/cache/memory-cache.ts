import { entryBytes } from "./entry.ts";
import type { CacheStore } from "./store.ts";

/** Settings of the in-process cache. */
export interface MemoryCacheOptions {
  /** Most entries kept; the least recently used goes first. */
  maxEntries: number;
  /** Most bytes kept over all entries, each counted as `entryBytes` of its stored text. */
  maxBytes: number;
  /** Epoch ms; injected by tests to move time. */
  now?: () => number;
}

interface Slot {
  value: string;
  bytes: number;
  expiresAt: number;
}

/**
 * An LRU with a TTL per entry, local to the process, bounded both by entry
 * count and by total bytes. Expired entries are dropped when read or when room
 * is needed, so no timer runs.
 */
export class MemoryCache implements CacheStore {
  // A Map iterates in insertion order: re-inserting on use keeps the least recent first.
  private readonly slots = new Map<string, Slot>();
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly now: () => number;
  private held = 0;

  constructor(options: MemoryCacheOptions) {
    this.maxEntries = options.maxEntries;
    this.maxBytes = options.maxBytes;
    this.now = options.now ?? (() => Date.now());
  }

  /** Entries currently held (expired ones included until they are noticed). */
  get size(): number {
    return this.slots.size;
  }

  /** Bytes currently held, by the measure `maxBytes` caps. */
  get bytes(): number {
    return this.held;
  }

  async get(key: string): Promise<string | undefined> {
    const slot = this.slots.get(key);
    if (!slot) return undefined;
    this.slots.delete(key);
    if (slot.expiresAt <= this.now()) {
      this.held -= slot.bytes;
      return undefined;
    }
    this.slots.set(key, slot);
    return slot.value;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    // The old answer goes even when the new one is too large: it has been replaced, not confirmed.
    this.remove(key);
    const bytes = entryBytes(value);
    if (bytes > this.maxBytes) return;
    this.makeRoom(bytes);
    this.slots.set(key, { value, bytes, expiresAt: this.now() + ttlMs });
    this.held += bytes;
  }

  dispose(): void {
    this.slots.clear();
    this.held = 0;
  }

  private remove(key: string): void {
    const slot = this.slots.get(key);
    if (!slot) return;
    this.slots.delete(key);
    this.held -= slot.bytes;
  }

  /** Frees room for one more entry of `bytes`: expired entries first, then the least recently used. */
  private makeRoom(bytes: number): void {
    const fits = () => this.slots.size < this.maxEntries && this.held + bytes <= this.maxBytes;
    if (fits()) return;
    const now = this.now();
    for (const [key, slot] of this.slots) {
      if (slot.expiresAt <= now) this.remove(key);
    }
    for (const key of this.slots.keys()) {
      if (fits()) break;
      this.remove(key);
    }
  }
}
