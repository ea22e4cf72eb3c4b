import { type AgentRunResult, definePlugin, type PluginLogger, type RunEvent, type TextTransformOptions, transformText } from "@qingyu/plugin-api";
import { BOUNDARY, DETECTORS } from "./detectors.ts";
import { INPUT_KEY, RedactOptions } from "./options.ts";
import { Redactor, type Tally } from "./redactor.ts";

/**
 * One call's redaction: transformText's options, and the counts that end up in
 * the result's metadata. A class, so the helper calls its methods with no
 * closures made per call.
 */
class CallRedaction implements TextTransformOptions, Tally {
  readonly boundary = BOUNDARY;
  counts: number[] | undefined = undefined;
  /** The task's count; undefined when the task is not redacted. */
  input: Tally | undefined;

  constructor(
    private readonly redactor: Redactor,
    readonly holdBack: number,
    readonly maxHold: number,
    private readonly logger: PluginLogger,
    private readonly callId: string,
    redactInput: boolean,
  ) {
    this.input = redactInput ? { counts: undefined } : undefined;
  }

  transform(text: string): string {
    return this.redactor.redact(text, this);
  }

  holdFrom(text: string, cut: number): number {
    return this.redactor.holdFrom(text, cut);
  }

  // Counts only, never what was redacted: the metadata reaches the client and the log line the log store.
  completed(result: AgentRunResult): AgentRunResult {
    const metadata: Record<string, string> = { ...result.metadata };
    let total = 0;
    if (this.counts) {
      const { names } = this.redactor;
      for (let i = 0; i < this.counts.length; i++) {
        const n = this.counts[i]!;
        if (n === 0) continue;
        total += n;
        metadata[`redactions.${names[i]}`] = String(n);
      }
    }
    metadata.redactions = String(total);
    let input = 0;
    if (this.input) {
      for (const n of this.input.counts ?? []) input += n;
      metadata[`redactions.${INPUT_KEY}`] = String(input);
    }
    if (total + input > 0) this.logger.debug({ call: this.callId, redactions: total, inputRedactions: input }, "redacted");
    result.metadata = metadata;
    return result;
  }
}

/**
 * Output sanitization: email addresses, phone numbers, card numbers, keys and
 * tokens, private keys and custom patterns are replaced in the answer, as it
 * streams and in the unary result alike, and with `input` in the task before
 * the model sees it.
 */
export default definePlugin({
  name: "redact",
  kind: "middleware",
  configSchema: RedactOptions,
  setup({ options, logger }) {
    const redactor = new Redactor({
      builtins: DETECTORS.filter((d) => options.detectors[d.name]),
      patterns: options.patterns,
      replacement: options.replacement,
      maxHold: options.maxHold,
    });
    const { holdBack, maxHold, input } = options;
    return {
      name: "redact",
      process(ctx, next): AsyncIterable<RunEvent> {
        const call = new CallRedaction(redactor, holdBack, maxHold, logger, ctx.callId, input);
        if (call.input) ctx.task = redactor.redact(ctx.task, call.input);
        return transformText(next(), call);
      },
    };
  },
});
