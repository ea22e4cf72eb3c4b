// The logger, tracer and meter a plugin gets, described by the members a plugin
// may call: pino's logger and OpenTelemetry's Tracer and Meter fit them, and
// this package needs neither. A plugin that wants the full OpenTelemetry types
// may cast to them (`host.tracer as import("@opentelemetry/api").Tracer`).

/** One logging method: `(obj, msg?)` or `(msg)`, as pino takes them. */
export interface LogFn {
  (obj: object, msg?: string, ...args: unknown[]): void;
  (msg: string, ...args: unknown[]): void;
}

/** A structured logger (pino's API): JSON lines in the runtime's log. */
export interface PluginLogger {
  fatal: LogFn;
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
  /** A logger whose lines carry these fields too. */
  child(bindings: Record<string, unknown>): PluginLogger;
  /** The current level name ("info", "debug"...). */
  level: string;
  isLevelEnabled(level: string): boolean;
}

/** Attribute values a span or a metric takes. */
export type AttributeValue = string | number | boolean | (string | null | undefined)[] | (number | null | undefined)[] | (boolean | null | undefined)[];
/** Span or metric attributes. */
export type Attributes = Record<string, AttributeValue | undefined>;

/** A span (OpenTelemetry's Span, the members a plugin commonly uses). */
export interface PluginSpan {
  setAttribute(key: string, value: AttributeValue): this;
  setAttributes(attributes: Attributes): this;
  addEvent(name: string, attributes?: Attributes): this;
  recordException(exception: unknown): void;
  /** code: 0 unset, 1 ok, 2 error. */
  setStatus(status: { code: number; message?: string }): this;
  end(endTime?: number): void;
  isRecording(): boolean;
}

/** The runtime's tracer; a no-op one when tracing is off. */
export interface PluginTracer {
  startSpan(name: string, options?: { attributes?: Attributes; kind?: number }): PluginSpan;
  /** Runs fn with the span active, so spans started inside nest under it. End it yourself. */
  startActiveSpan<F extends (span: PluginSpan) => unknown>(name: string, fn: F): ReturnType<F>;
}

/** A counter or up-down counter. */
export interface PluginCounter {
  add(value: number, attributes?: Attributes): void;
}

/** A histogram. */
export interface PluginHistogram {
  record(value: number, attributes?: Attributes): void;
}

/** The runtime's meter: metrics a plugin makes are exported with the runtime's. */
export interface PluginMeter {
  createCounter(name: string, options?: { description?: string; unit?: string }): PluginCounter;
  createUpDownCounter(name: string, options?: { description?: string; unit?: string }): PluginCounter;
  createHistogram(name: string, options?: { description?: string; unit?: string }): PluginHistogram;
}
