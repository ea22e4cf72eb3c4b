// Which event types the processes sharing an event stream listen to from afar
// (`{ remote: true }` subscriptions: a Subscribe RPC), announced in a Redis hash
// next to the stream: field = the process's origin id, value = "<expires at,
// epoch ms> <types, comma-separated>". A process appends an event to the stream
// only when another process wants its type: without this, every call paid
// several XADDs that nobody read (bench:workers, Redis stores: 6,053 against
// 12,506 calls/s on one worker with sharing off).
import type { EventType } from "@qingyu/plugin-api";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { RedisOutage } from "../clients/redis-outage.ts";
import { isEventType } from "./stream-entry.ts";

/** How an announcement is kept. */
export interface InterestTiming {
  /** How long an announcement holds without being renewed: a process that died stops counting after this. */
  ttlMs: number;
  /** How often a process renews its own announcement and re-reads everyone's. */
  refreshMs: number;
}

// An announcement this far past its expiry is from a process long gone: anyone may remove it.
const FORGET_AFTER_MS = 60 * 60 * 1000;

/** The other processes' remote interest, and this process's own announcement. */
export class RemoteInterest {
  /** Undefined until the announcements were first read: until then every type counts as wanted. */
  private wanted: ReadonlySet<EventType> | undefined;
  private own: readonly EventType[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private reading: Promise<void> | undefined;
  private closed = false;
  private readonly readFailures: RedisOutage;
  private readonly announceFailures: RedisOutage;

  constructor(
    private readonly redis: Redis,
    /** The hash's key. */
    private readonly key: string,
    private readonly origin: string,
    log: Logger,
    private readonly timing: InterestTiming,
    /** Called after this process's announcement changed, to tell the others at once (a control entry in the stream). */
    private readonly changed: () => void,
  ) {
    this.readFailures = new RedisOutage(log, "event interest: could not read which event types other processes listen to; sharing as before");
    this.announceFailures = new RedisOutage(
      log,
      "event interest: could not announce which event types this process's subscribers want from other processes; retrying every refresh",
    );
  }

  /** Whether another process may listen to this type (true while that is not known yet). */
  wants(type: EventType): boolean {
    return this.wanted === undefined || this.wanted.has(type);
  }

  /** Reads everyone's announcements now, and then every refreshMs (renewing this process's own). */
  start(): Promise<void> {
    this.timer = setInterval(() => {
      if (this.own.length) void this.write();
      void this.refresh();
    }, this.timing.refreshMs);
    this.timer.unref();
    return this.refresh();
  }

  /** This process's remote subscriptions now listen to these types: announces them (none: withdraws). */
  announce(types: readonly EventType[]): void {
    const same = types.length === this.own.length && types.every((t) => this.own.includes(t));
    if (same || this.closed) return;
    this.own = types;
    void this.write().then((ok) => ok && this.changed());
  }

  /** Re-reads the announcements (another process announced a change); one read at a time. */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.reading ??= this.read().finally(() => (this.reading = undefined));
    return this.reading;
  }

  /** Stops renewing and withdraws this process's announcement. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    if (this.own.length) await this.redis.hdel(this.key, this.origin).catch(() => undefined);
  }

  private async read(): Promise<void> {
    try {
      const all = await this.redis.hgetall(this.key);
      const now = Date.now();
      const wanted = new Set<EventType>();
      const forgotten: string[] = [];
      for (const [origin, value] of Object.entries(all)) {
        if (origin === this.origin) continue;
        const space = value.indexOf(" ");
        const expires = Number(value.slice(0, space));
        if (!(expires > now)) {
          if (now - expires > FORGET_AFTER_MS || Number.isNaN(expires)) forgotten.push(origin);
          continue;
        }
        for (const type of value.slice(space + 1).split(",")) if (isEventType(type)) wanted.add(type);
      }
      this.wanted = wanted;
      if (forgotten.length) await this.redis.hdel(this.key, ...forgotten);
      this.readFailures.ok();
    } catch (err) {
      // The last answer stands (or, never read, every type counts as wanted).
      this.readFailures.note(err);
    }
  }

  private async write(): Promise<boolean> {
    try {
      if (this.own.length) await this.redis.hset(this.key, this.origin, `${Date.now() + this.timing.ttlMs} ${this.own.join(",")}`);
      else await this.redis.hdel(this.key, this.origin);
      this.announceFailures.ok();
      return true;
    } catch (err) {
      this.announceFailures.note(err);
      return false;
    }
  }
}
