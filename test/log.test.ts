import { Code, ConnectError } from "@qingyu/plugin-api";
import pino from "pino";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { logFormat, logSerializers } from "../src/log.ts";

describe("logFormat", () => {
  it("auto is pretty at a terminal and JSON in a pipe; json and pretty are what they say", () => {
    expect(logFormat("auto", true)).toBe("pretty");
    expect(logFormat("auto", false)).toBe("json");
    expect(logFormat("json", true)).toBe("json");
    expect(logFormat("pretty", false)).toBe("pretty");
  });
});

describe("logSerializers", () => {
  it("logs a ConnectError's own words, without the [code] its message begins with, and keeps its code", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = pino({ serializers: logSerializers }, sink);
    log.error({ err: new ConnectError("the bad plugin needs BAD_URL", Code.FailedPrecondition) }, "failed");
    log.error({ err: new Error("plain") }, "failed");
    const [connect, plain] = lines.map((l) => JSON.parse(l) as { err: { message: string; code?: number; type: string } });
    expect(connect!.err).toMatchObject({ message: "the bad plugin needs BAD_URL", code: Code.FailedPrecondition, type: "ConnectError" });
    expect(plain!.err).toMatchObject({ message: "plain", type: "Error" });
  });
});
