import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { RedisOutage } from "../clients/redis-outage.ts";
import type { RunFeed } from "./feed.ts";
import type { RunLogEvent, SequencedEvent } from "./types.ts";

/** Settings of a RedisRunFeed; each has a default. */
export interface RedisRunFeedOptions {
  /** Keys are `${keyPrefix}run:<id>:feed` (the config's sessions.redisKeyPrefix). */
  keyPrefix?: string;
  /** About how many entries one run's feed keeps (XADD MAXLEN ~): older ones are left to the journal. */
  maxLen?: number;
  /**
   * Events published within this many ms go to Redis in one pipeline. A run's events come a few at a time
   * (each barrier waits on its journal write); a pipeline per tick was one Redis round trip per event or two,
   * which cost a five-step run about 5 ms of its 20 on two cores (npm run bench:runs, BENCH_RUNS_FEED=off to compare).
   */
  batchMs?: number;
  /** Seconds a feed lives past its latest entry while its run goes on (a replica that died never ends it). */
  liveTtlSec?: number;
  /** Seconds a feed lives once its run ended. */
  endedTtlSec?: number;
  /** How long one XREAD of a follower blocks. */
  blockMs?: number;
  /** Most events queued or in flight to Redis: past it an event is not published rather than queued without bound. */
  maxPending?: number;
}

/** The CLIENT SETNAME of the follower connections of a feed on `keyPrefix`: they can be told apart in CLIENT LIST. */
export const followerName = (keyPrefix: string): string => `run-feed:${keyPrefix.replace(/\s/g, "_")}`;

/** The events after which a run has nothing more to say: its feed gets the ended expiry. */
const FINAL: ReadonlySet<RunLogEvent["type"]> = new Set(["completed", "failed", "cancelled"]);
/** How long past its block time a follower's read may take before its connection counts as dead. */
const READ_GRACE_MS = 3000;
/** Most entries one XREAD of a follower returns. */
const FOLLOW_BATCH = 500;
/** Redis's refusal of an XADD whose id is not above the stream's top: a publish made twice. */
const DUPLICATE = /equal or smaller than the target stream top item/;

type Op = { runId: string; event: SequencedEvent; data: string } | { runId: string; end: true };

/**
 * One Redis stream per run, `<prefix>run:<id>:feed`, whose entry ids are the
 * events' seqs (`<seq>-0`): XADD keeps them in order and refuses a repeat,
 * and a read "after seq N" is exact. Publishes are batched per tick into one
 * pipeline on the shared client and never awaited by the run. Each follower
 * has a connection of its own: XREAD BLOCK holds its connection, and closing
 * that connection is the one way to stop a blocked read at once without a
 * CLIENT UNBLOCK from yet another one; followers are watchers of runs owned
 * by other replicas, few per run, and each connection goes when its follower
 * ends. The shared client is the caller's: close() leaves it open.
 */
export class RedisRunFeed implements RunFeed {
  private readonly prefix: string;
  private readonly maxLen: number;
  private readonly liveTtlSec: number;
  private readonly endedTtlSec: number;
  private readonly blockMs: number;
  private readonly maxPending: number;
  private readonly batchMs: number;
  private readonly publishing: RedisOutage;
  private readonly reading: RedisOutage;
  private ops: Op[] = [];
  private flushing: ReturnType<typeof setTimeout> | undefined;
  /** Events queued or in flight. */
  private pending = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly followers = new Set<() => void>();
  /** When each live stream's expiry was last pushed back (epoch ms): once in a while is enough, not with every flush. */
  private readonly expirySetAt = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
    options: RedisRunFeedOptions = {},
  ) {
    this.prefix = options.keyPrefix ?? "qingyu:";
    this.maxLen = options.maxLen ?? 10_000;
    this.liveTtlSec = options.liveTtlSec ?? 24 * 3600;
    this.endedTtlSec = options.endedTtlSec ?? 3600;
    this.blockMs = options.blockMs ?? 5000;
    this.maxPending = options.maxPending ?? 10_000;
    this.batchMs = options.batchMs ?? 5;
    this.publishing = new RedisOutage(
      log,
      "run feed: events not published to Redis; watchers on other replicas get them from the journal, without text deltas",
    );
    this.reading = new RedisOutage(log, "run feed: Redis unreadable; watchers on other replicas poll the journal, without text deltas");
  }

  /** The stream of `runId`. */
  key(runId: string): string {
    return `${this.prefix}run:${runId}:feed`;
  }

  publish(runId: string, event: SequencedEvent): void {
    if (this.closed) return;
    try {
      if (this.pending >= this.maxPending) throw new Error(`${this.pending} events to Redis queued or in flight`);
      this.queue({ runId, event, data: JSON.stringify(event) });
      this.pending++;
    } catch (err) {
      this.publishing.note(err);
    }
  }

  end(runId: string): void {
    if (!this.closed) this.queue({ runId, end: true });
  }

  async read(runId: string, afterSeq: number, limit: number): Promise<SequencedEvent[]> {
    try {
      const entries = await this.redis.xrange(this.key(runId), `${Math.floor(afterSeq) + 1}-0`, "+", "COUNT", limit);
      this.reading.ok();
      return this.decode(entries);
    } catch (err) {
      this.reading.note(err);
      throw err;
    }
  }

  async *follow(runId: string, afterSeq: number, signal: AbortSignal): AsyncGenerator<SequencedEvent> {
    if (signal.aborted || this.closed) return;
    const conn = this.redis.duplicate({
      connectionName: followerName(this.prefix),
      // A blocking read must not time out as an ordinary command; past the grace the connection is dead.
      commandTimeout: this.blockMs + READ_GRACE_MS,
      // The shared client may have turned its offline queue off: the first read waits for this connection.
      enableOfflineQueue: true,
      maxRetriesPerRequest: 1,
      autoResendUnfulfilledCommands: false,
      // No reconnecting: a lost connection ends the follow with an error, and the watcher falls back to the journal.
      retryStrategy: () => null,
    });
    // Failures reach the read below; without a listener ioredis prints every connection error.
    conn.on("error", () => {});
    let abandon: ((err: Error) => void) | undefined;
    const stop = () => {
      conn.disconnect();
      abandon?.(new Error("follow stopped"));
    };
    signal.addEventListener("abort", stop, { once: true });
    this.followers.add(stop);
    try {
      let from = `${Math.floor(afterSeq)}-0`;
      while (!signal.aborted && !this.closed) {
        const read = conn.xread("COUNT", FOLLOW_BATCH, "BLOCK", this.blockMs, "STREAMS", this.key(runId), from);
        read.catch(() => {});
        let reply: Awaited<typeof read>;
        try {
          reply = await new Promise<Awaited<typeof read>>((resolve, reject) => {
            abandon = reject;
            read.then(resolve, reject);
          });
        } catch (err) {
          if (signal.aborted || this.closed) return;
          this.reading.note(err);
          throw err;
        }
        this.reading.ok();
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length) from = entries.at(-1)![0];
        for (const e of this.decode(entries)) {
          if (signal.aborted) return;
          yield e;
        }
      }
    } finally {
      signal.removeEventListener("abort", stop);
      this.followers.delete(stop);
      conn.disconnect();
    }
  }

  async lastSeq(runId: string): Promise<number> {
    try {
      const [top] = await this.redis.xrevrange(this.key(runId), "+", "-", "COUNT", 1);
      this.reading.ok();
      return top ? Number(top[0].split("-")[0]) : 0;
    } catch (err) {
      this.reading.note(err);
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of [...this.followers]) stop();
    if (this.flushing) clearTimeout(this.flushing);
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }

  private queue(op: Op): void {
    this.ops.push(op);
    this.flushing ??= setTimeout(() => this.flush(), this.batchMs);
  }

  /** Sends what was queued in the last batchMs in one pipeline: the XADDs in order, then each stream's expiry. */
  private flush(): void {
    this.flushing = undefined;
    const ops = this.ops;
    this.ops = [];
    if (!ops.length) return;
    const pipeline = this.redis.pipeline();
    const ttl = new Map<string, number>();
    let events = 0;
    for (const op of ops) {
      const key = this.key(op.runId);
      if ("end" in op) {
        ttl.set(key, this.endedTtlSec);
        continue;
      }
      events++;
      pipeline.xadd(key, "MAXLEN", "~", this.maxLen, `${op.event.seq}-0`, "e", op.data);
      if (FINAL.has(op.event.event.type)) ttl.set(key, this.endedTtlSec);
      else if (!ttl.has(key)) ttl.set(key, this.liveTtlSec);
    }
    // A live stream's expiry is pushed back when it was not for a tenth of its span: an EXPIRE per flush
    // doubled the commands a run sends (two per tick of events), for nothing.
    const now = Date.now();
    for (const [key, seconds] of ttl) {
      const live = seconds === this.liveTtlSec;
      if (live && now - (this.expirySetAt.get(key) ?? -Infinity) < (this.liveTtlSec * 1000) / 10) continue;
      pipeline.expire(key, seconds);
      if (live) this.expirySetAt.set(key, now);
      else this.expirySetAt.delete(key);
    }
    const sent = pipeline.exec().then(
      (results) => {
        const failed = (results ?? []).map(([err]) => err).filter((err) => err && !DUPLICATE.test(err.message));
        if (failed.length) this.publishing.note(failed[0], failed.length);
        else this.publishing.ok();
      },
      (err: unknown) => this.publishing.note(err, events),
    );
    const done = sent.finally(() => {
      this.pending -= events;
      this.inFlight.delete(done);
    });
    this.inFlight.add(done);
  }

  private decode(entries: [id: string, fields: string[]][]): SequencedEvent[] {
    const out: SequencedEvent[] = [];
    for (const [id, fields] of entries) {
      const at = fields.indexOf("e");
      try {
        out.push(JSON.parse(at < 0 ? "" : (fields[at + 1] ?? "")) as SequencedEvent);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, entry: id }, "run feed: unreadable entry skipped");
      }
    }
    return out;
  }
}
