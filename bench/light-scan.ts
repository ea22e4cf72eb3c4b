// Reading one answer in bench/light-client.ts: when its first content arrived,
// when each stamped token arrived (bench/fake-openai.ts "-stamp"), and whether
// it was a whole, successful answer. String searches on each chunk, no JSON
// parse: the client's own cost stays small and the same on both sides.

/** The answer formats the light client reads. */
export type Kind = "openai-json" | "openai-sse" | "connect-unary" | "connect-stream" | "sse" | "grpc-stream";

/** What one call measured, times in performance.now() ms. */
export interface CallResult {
  ok: boolean;
  error?: string;
  start: number;
  end: number;
  /** When the first content (text) of a streamed answer arrived. */
  firstContent?: number;
  bytes: number;
  /** Per stamped token: arrival − the upstream's stamp, ms (clock offsets cancel between direct and ours). */
  tokenLatencyMs: number[];
  /** Per stamped token after the first: arrival − the previous token's arrival, ms. */
  tokenGapMs: number[];
}

// How each kind's first content looks: the role chunk's `"content":""` is not content.
const FIRST: Partial<Record<Kind, RegExp>> = {
  "openai-sse": /"content":"[^"]/,
  "connect-stream": /\{"delta":/,
  sse: /event: delta/,
};
// A streamed answer repeats its text in its last message: stamps after this marker are not tokens.
const COMPLETED: Partial<Record<Kind, string>> = { "connect-stream": '{"completed":', sse: "event: completed" };
const STAMP = /~(\d+\.\d{3})~/g;
const CARRY = 40;
const TAIL_BYTES = 16 * 1024;
const DELTA_TAG = 0x12; // ExecuteStreamResponse field 2 (delta), length-delimited

class Scanner {
  private status = "";
  private bytes = 0;
  private firstContent: number | undefined;
  private carry = "";
  private done = false; // past the last delta (stamps no longer counted)
  private lastArrival = NaN;
  private readonly tail: Buffer[] = [];
  private tailBytes = 0;
  private readonly tokenLatencyMs: number[] = [];
  private readonly tokenGapMs: number[] = [];
  // gRPC frame reader, for the first delta's tag byte
  private readonly header = Buffer.alloc(5);
  private headerAt = 0;
  private payloadLeft = 0;
  private payloadStart = false;

  constructor(
    private readonly kind: Kind,
    private readonly start: number,
    private readonly stamps: boolean,
  ) {}

  setStatus(status: string): void {
    this.status = status;
  }

  push(chunk: Buffer, t: number): void {
    this.bytes += chunk.length;
    this.keepTail(chunk);
    if (this.kind === "grpc-stream") {
      if (this.firstContent === undefined) this.grpcFirst(chunk, t);
      return;
    }
    const first = FIRST[this.kind];
    if (!first || (this.firstContent !== undefined && !this.stamps) || this.done) return;
    const text = this.carry + chunk.toString("latin1");
    if (this.firstContent === undefined && first.test(text)) this.firstContent = t;
    if (this.stamps) this.countStamps(text, t);
    this.carry = text.slice(-CARRY);
  }

  private countStamps(text: string, t: number): void {
    const marker = COMPLETED[this.kind];
    const stop = marker ? text.indexOf(marker) : -1;
    if (stop >= 0) this.done = true;
    const arrival = performance.timeOrigin + t;
    STAMP.lastIndex = 0;
    for (let m = STAMP.exec(text); m; m = STAMP.exec(text)) {
      if (stop >= 0 && m.index >= stop) break;
      // A stamp wholly inside the carried-over text was counted with the chunk before.
      if (m.index + m[0].length <= this.carry.length) continue;
      this.tokenLatencyMs.push(arrival - Number(m[1]));
      if (!Number.isNaN(this.lastArrival)) this.tokenGapMs.push(t - this.lastArrival);
      this.lastArrival = t;
    }
  }

  private grpcFirst(chunk: Buffer, t: number): void {
    for (let i = 0; i < chunk.length && this.firstContent === undefined;) {
      if (this.payloadLeft > 0) {
        if (this.payloadStart && chunk[i] === DELTA_TAG) this.firstContent = t;
        this.payloadStart = false;
        const take = Math.min(this.payloadLeft, chunk.length - i);
        i += take;
        this.payloadLeft -= take;
        continue;
      }
      this.header[this.headerAt++] = chunk[i++]!;
      if (this.headerAt === 5) {
        this.payloadLeft = this.header.readUInt32BE(1);
        this.payloadStart = this.payloadLeft > 0;
        this.headerAt = 0;
      }
    }
  }

  private keepTail(chunk: Buffer): void {
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    while (this.tail.length > 1 && this.tailBytes - this.tail[0]!.length >= TAIL_BYTES) this.tailBytes -= this.tail.shift()!.length;
  }

  end(t: number): CallResult {
    const problem = this.problem();
    return problem ? this.fail(new Error(problem), t) : this.result(true, t);
  }

  fail(err: Error, t: number): CallResult {
    return { ...this.result(false, t), error: err.message };
  }

  private result(ok: boolean, t: number): CallResult {
    return {
      ok,
      start: this.start,
      end: t,
      ...(this.firstContent !== undefined ? { firstContent: this.firstContent } : {}),
      bytes: this.bytes,
      tokenLatencyMs: this.tokenLatencyMs,
      tokenGapMs: this.tokenGapMs,
    };
  }

  /** Why the answer is not a whole, successful one; undefined when it is. */
  private problem(): string | undefined {
    const expected = this.kind === "grpc-stream" ? "0" : "200";
    if (this.status !== expected) return `${this.kind}: status ${this.status || "none"} (expected ${expected})`;
    if (this.kind === "grpc-stream") return this.firstContent === undefined ? "grpc-stream: no delta" : undefined;
    const tail = Buffer.concat(this.tail).toString("latin1");
    const whole: Record<Exclude<Kind, "grpc-stream">, () => boolean> = {
      "openai-json": () => tail.includes('"finish_reason":"stop"'),
      "openai-sse": () => tail.endsWith("data: [DONE]\n\n"),
      "connect-unary": () => tail.includes('"success":true'),
      "connect-stream": () => {
        const at = tail.lastIndexOf('{"completed":{"success":true');
        return at >= 0 && !tail.includes('{"error":', at);
      },
      sse: () => {
        const at = tail.lastIndexOf("event: completed");
        return at >= 0 && tail.includes('"success":true', at) && !tail.includes("event: error", at);
      },
    };
    if (!whole[this.kind]()) return `${this.kind}: not a whole, successful answer; ends ${JSON.stringify(tail.slice(-200))}`;
    if (FIRST[this.kind] && this.firstContent === undefined) return `${this.kind}: no content`;
    return undefined;
  }
}

/** A scanner for one answer of `kind`, started at `start`; `stamps` counts stamped tokens. */
export function scanner(kind: Kind, start: number, stamps: boolean) {
  const s = new Scanner(kind, start, stamps);
  return {
    status: (v: string) => s.setStatus(v),
    push: (c: Buffer, t: number) => s.push(c, t),
    end: (t: number) => s.end(t),
    fail: (e: Error, t: number) => s.fail(e, t),
  };
}
