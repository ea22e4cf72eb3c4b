import { EVENT_TYPES, type EventBus, type EventInit, type EventListener, type EventType, type SubscribeOptions } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { z } from "zod";
import { DEFAULT_MAX_EVENT_BYTES } from "./event-size.ts";
import { MemoryEventBus, stampEvent } from "./memory-bus.ts";
import { compareIds, decodeEvent, entryFields, fieldsOf, isEventType, type RawEntry } from "./stream-entry.ts";
import { RemoteInterest } from "./interest.ts";
import { ThrottledWarning } from "./throttled-warning.ts";

/** Settings of a RedisEventBus. */
export const RedisEventBusOptions = z.strictObject({
  /** The stream is `${keyPrefix}events`; processes sharing events use the same prefix. */
  keyPrefix: z.string().min(1).default("qingyu:"),
  /** About how many events the stream keeps (XADD MAXLEN ~): a reader away for longer loses the oldest. */
  maxLen: z.int().positive().default(10_000),
  /** Largest event, in estimated JSON bytes; bigger ones are cut, so the stream holds about maxLen × this at most. */
  maxEventBytes: z.int().positive().default(DEFAULT_MAX_EVENT_BYTES),
  /** The types that may cross processes, both ways; default all. An event goes to the stream (one XADD) only while another process listens to its type. */
  types: z.array(z.enum(EVENT_TYPES as [EventType, ...EventType[]])).optional(),
  /** How long a process's announcement of the types it listens to from afar holds unless renewed (a process that died stops counting then). */
  interestTtlMs: z.int().positive().default(15_000),
  /** How often a process renews its announcement and re-reads the others' (they also tell each other at once through the stream). */
  interestRefreshMs: z.int().positive().default(5_000),
  /** How long one XREAD blocks waiting for events. */
  blockMs: z.int().positive().default(5000),
  /** Most entries one XREAD returns. */
  batch: z.int().positive().default(100),
  /** Most XADDs in flight; beyond that an event is not shared (and that is logged) rather than queued without bound. */
  maxPending: z.int().positive().default(1000),
  /** The reader's wait after an error: doubles from the first to the second. */
  retryMinMs: z.int().positive().default(200),
  retryMaxMs: z.int().positive().default(5000),
  /** At most one warning line per this interval about events that could not be shared or read. */
  warnIntervalMs: z.int().positive().default(10_000),
  /** This process's id in the stream, random by default; a client name, so no spaces. */
  origin: z
    .string()
    .regex(/^[\w.:-]+$/)
    .optional(),
});

/** What a caller passes: every setting has a default. */
export type RedisEventBusInput = z.input<typeof RedisEventBusOptions>;

/** How long past the block time a read may take before the reader connection counts as dead. */
const READ_GRACE_MS = 3000;

/**
 * An event bus shared by every server process on one Redis, through one
 * stream. A publish is delivered here exactly as the MemoryEventBus does, and,
 * while another process listens to its type from afar (interest.ts), appended to
 * the stream without waiting (a failed append is logged, throttled; the local
 * delivery happens anyway). A dedicated reader connection (XREAD
 * BLOCK holds its connection) reads the other processes' events and hands them,
 * with `remote: true`, only to subscriptions made with `{ remote: true }`: a
 * webhook or alert handler acts on its own process's events only, or every
 * replica would act on each one. Events of one publisher arrive in publish
 * order. After a Redis outage the reader goes on from the last entry it read,
 * so events published meanwhile still arrive; those already trimmed by maxLen
 * are lost, and that is logged. Events are cut to `maxEventBytes` both when
 * published and when read, so the stream holds about maxLen × maxEventBytes at
 * most. The shared client is the app's: close() stops
 * the reader and leaves the client open.
 */
export class RedisEventBus implements EventBus {
  /** This process's id in the stream. */
  readonly origin: string;
  /** The reader connection's CLIENT SETNAME. */
  readonly readerName: string;
  private readonly settings: z.output<typeof RedisEventBusOptions>;
  private readonly key: string;
  private readonly shared: ReadonlySet<EventType>;
  /** Every subscription: gets this process's events. */
  private readonly local: MemoryEventBus;
  /** The `{ remote: true }` subscriptions again: get the other processes' events. */
  private readonly remote: MemoryEventBus;
  private readonly notShared: ThrottledWarning;
  /** Which types other processes listen to from afar; an event of another type is not appended. */
  private readonly interest: RemoteInterest;
  /** This process's `{ remote: true }` subscriptions: how many listen to each type. */
  private readonly remoteTypes = new Map<EventType, number>();
  private readonly unreadable: ThrottledWarning;
  private pending = 0;
  private reader: Redis | undefined;
  private started: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private closed = false;
  /** Rejects the reader's current wait (close). */
  private abandon: ((err: Error) => void) | undefined;
  private backoff: ReturnType<typeof setTimeout> | undefined;
  /** Whether the reader waits on Redis (not on its backoff). */
  private reading = false;
  /** The last stream entry read; undefined until the reader has first reached Redis. */
  private lastId: string | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
    options: RedisEventBusInput = {},
  ) {
    this.settings = RedisEventBusOptions.parse(options);
    this.origin = this.settings.origin ?? randomUUID();
    this.readerName = `qingyu-events-${this.origin}`;
    this.key = `${this.settings.keyPrefix}events`;
    this.shared = new Set(this.settings.types ?? EVENT_TYPES);
    this.local = new MemoryEventBus(log);
    this.remote = new MemoryEventBus(log);
    const every = `; at most one line per ${this.settings.warnIntervalMs} ms`;
    this.notShared = new ThrottledWarning(log, `event not shared with other processes (delivered here only)${every}`, this.settings.warnIntervalMs);
    this.unreadable = new ThrottledWarning(log, `unreadable entry in the event stream skipped${every}`, this.settings.warnIntervalMs);
    const timing = { ttlMs: this.settings.interestTtlMs, refreshMs: this.settings.interestRefreshMs };
    this.interest = new RemoteInterest(redis, `${this.key}:interest`, this.origin, log, timing, () => this.tellInterestChanged());
  }

  publish(init: EventInit): void {
    const share = this.shares(init.type);
    if (!share && !this.local.hasSubscribers(init.type)) return;
    const event = stampEvent(init, this.settings.maxEventBytes);
    this.local.dispatch(event);
    if (!share) return;
    if (this.pending >= this.settings.maxPending) {
      this.notShared.note(new Error(`${this.pending} appends to Redis in flight`), event);
      return;
    }
    let fields: string[];
    try {
      // Encoded now, before any listener runs and could change the event.
      fields = entryFields(this.origin, event);
    } catch (err) {
      this.notShared.note(err, event);
      return;
    }
    this.pending++;
    this.redis.xadd(this.key, "MAXLEN", "~", this.settings.maxLen, "*", ...fields).then(
      () => {
        this.pending--;
        this.notShared.ok("events are shared with other processes again");
      },
      (err: unknown) => {
        this.pending--;
        this.notShared.note(err, event);
      },
    );
  }

  subscribe(types: readonly EventType[] | "any", listener: EventListener, options?: SubscribeOptions): () => void {
    const offLocal = this.local.subscribe(types, listener);
    if (!options?.remote) return offLocal;
    const offRemote = this.remote.subscribe(types, listener);
    const counted = (types === "any" ? EVENT_TYPES : types).filter((t) => this.shared.has(t));
    this.countRemote(counted, 1);
    let off = false;
    return () => {
      offLocal();
      offRemote();
      if (off) return;
      off = true;
      this.countRemote(counted, -1);
    };
  }

  /** True for a type another process listens to (or may: until that is known, every shared type). */
  hasSubscribers(type: EventType): boolean {
    return this.local.hasSubscribers(type) || this.shares(type);
  }

  /**
   * Opens the reader connection and starts reading at the stream's end. Resolves
   * once the reader has its starting point, or after its first attempt failed
   * (it keeps retrying; events published before it first reaches Redis are not
   * read). Never rejects: a Redis that is down does not stop the server.
   */
  start(): Promise<void> {
    if (this.started) return this.started;
    if (this.closed) return (this.started = Promise.resolve());
    const { blockMs } = this.settings;
    const reader = this.redis.duplicate({
      connectionName: this.readerName,
      // A blocking read must not time out as an ordinary command; past the grace, the connection is dead.
      commandTimeout: blockMs + READ_GRACE_MS,
      // The shared client may have turned its offline queue off; a read waits for the reconnect instead.
      enableOfflineQueue: true,
      // Fail a read after one failed reconnect, so the loop sees the outage and logs it.
      maxRetriesPerRequest: 1,
      // A read the connection lost is abandoned (below) and issued again by the loop, from the same id.
      autoResendUnfulfilledCommands: false,
    });
    // The loop logs outages once each; without a listener ioredis prints every connection error.
    reader.on("error", () => {});
    // Without this, a read on a dropped connection would wait out its command timeout before the loop knew.
    reader.on("close", () => {
      if (this.reading) this.abandon?.(new Error("connection to Redis lost"));
    });
    this.reader = reader;
    const reading = new Promise<void>((ready) => {
      this.loop = this.read(reader, ready);
    });
    this.started = Promise.all([reading, this.interest.start()]).then(() => undefined);
    return this.started;
  }

  /** Stops the reader promptly (a pending read is abandoned) and logs what is still counted; publish is local only after. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.backoff);
    this.abandon?.(new Error("closed"));
    await Promise.all([this.loop, this.interest.close()]);
    this.reader?.disconnect();
    this.notShared.close();
    this.unreadable.close();
  }

  private async read(reader: Redis, ready: () => void): Promise<void> {
    const { blockMs, batch, retryMinMs, retryMaxMs } = this.settings;
    let failures = 0;
    let downSince: number | undefined;
    while (!this.closed) {
      try {
        if (this.lastId === undefined) this.lastId = await this.race(this.streamEnd(reader));
        else if (downSince !== undefined) await this.race(this.reportTrimmed(reader, this.lastId));
        ready();
        if (this.closed) break;
        const reply = await this.race(reader.xread("COUNT", batch, "BLOCK", blockMs, "STREAMS", this.key, this.lastId));
        if (downSince !== undefined) this.log.info({ outageMs: Date.now() - downSince }, "event stream reader reconnected");
        downSince = undefined;
        failures = 0;
        if (reply) this.receive(reply[0]![1] as RawEntry[]);
      } catch (err) {
        if (this.closed) break;
        if (downSince === undefined) {
          downSince = Date.now();
          this.log.warn({ err: (err as Error).message, stream: this.key, lastId: this.lastId }, "event stream reader failed; retrying until Redis answers");
        }
        ready();
        // A read that outlived its block time: the connection is dead without having closed; open a new one.
        if ((err as Error).message === "Command timed out") reader.disconnect(true);
        // Rejected only by close(), which the loop's condition then sees.
        await this.race(this.pause(Math.min(retryMinMs * 2 ** failures++, retryMaxMs)), false).catch(() => {});
      }
    }
    // Closed before the first attempt ended: start() must not hang.
    ready();
  }

  /** The command's result, or (on close) a rejection without waiting for it; its own failure is then ignored. */
  private race<T>(command: Promise<T>, reading = true): Promise<T> {
    command.catch(() => {});
    this.reading = reading;
    return new Promise<T>((resolve, reject) => {
      this.abandon = reject;
      command.then(resolve, reject);
    });
  }

  /** The wait between retries; it does not keep the process alive, and close() clears it. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.backoff = setTimeout(resolve, ms);
      this.backoff.unref?.();
    });
  }

  /** The id of the stream's last entry, where reading starts ("0-0" when there is none yet). */
  private async streamEnd(reader: Redis): Promise<string> {
    const last = await reader.xrevrange(this.key, "+", "-", "COUNT", 1);
    return last[0]?.[0] ?? "0-0";
  }

  /**
   * After an outage: warns when the stream was trimmed past the last entry read,
   * so events published meanwhile may be gone. (Trimming leaves no record of
   * what it removed; an oldest entry newer than the last one read is the sign.)
   */
  private async reportTrimmed(reader: Redis, lastId: string): Promise<void> {
    let info: unknown[];
    try {
      info = (await reader.xinfo("STREAM", this.key)) as unknown[];
    } catch (err) {
      if (/no such key/i.test((err as Error).message)) return;
      throw err;
    }
    const field = (name: string) => info[info.indexOf(name) + 1];
    const firstId = (field("first-entry") as [string, string[]] | null)?.[0];
    // Positioned on an empty stream: anything added and no longer there was trimmed (entries-added: Redis 7).
    const trimmed =
      lastId === "0-0" ? Number(field("entries-added") ?? 0) > Number(field("length") ?? 0) : firstId !== undefined && compareIds(firstId, lastId) > 0;
    if (trimmed) {
      this.log.warn(
        { stream: this.key, lastId, oldestId: firstId, maxLen: this.settings.maxLen },
        "the event stream was trimmed past the last entry this process read: events from other processes published meanwhile may be lost here",
      );
    }
  }

  /** Whether an event of this type goes to the stream now: shared, and another process listens to it (or may: not known yet). */
  shares(type: EventType): boolean {
    return !this.closed && this.shared.has(type) && this.interest.wants(type);
  }

  private countRemote(types: readonly EventType[], by: 1 | -1): void {
    for (const type of types) {
      const n = (this.remoteTypes.get(type) ?? 0) + by;
      if (n > 0) this.remoteTypes.set(type, n);
      else this.remoteTypes.delete(type);
    }
    this.interest.announce([...this.remoteTypes.keys()]);
  }

  // A control entry: the other processes re-read the announcements when they read it, instead of at their next refresh.
  private tellInterestChanged(): void {
    if (this.closed) return;
    this.redis.xadd(this.key, "MAXLEN", "~", this.settings.maxLen, "*", "o", this.origin, "c", "interest").catch((err: unknown) => {
      this.log.warn(
        { err: (err as Error).message, stream: this.key },
        "could not tell other processes this one's event subscriptions changed; they learn it at their next refresh",
      );
    });
  }

  private receive(entries: RawEntry[]): void {
    for (const entry of entries) {
      this.lastId = entry[0];
      const fields = fieldsOf(entry);
      const type = fields.get("t");
      if (fields.get("o") === this.origin) continue;
      if (fields.get("c") === "interest") {
        void this.interest.refresh();
        continue;
      }
      if (!isEventType(type)) {
        this.unreadable.note(new Error(`unknown event type ${type}`), { id: entry[0], type: type as EventType }, { streamId: entry[0] });
        continue;
      }
      // Parsed only when someone here listens to this type from afar.
      if (!this.shared.has(type) || !this.remote.hasSubscribers(type)) continue;
      try {
        this.remote.dispatch(decodeEvent(fields.get("e") ?? "", this.settings.maxEventBytes));
      } catch (err) {
        this.unreadable.note(err, { id: entry[0], type }, { streamId: entry[0] });
      }
    }
  }
}
