import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { RedisScript } from "../../src/clients/redis-script.ts";
import { REDIS_URL } from "../sessions/redis-support.ts";
import { recordCommands } from "../support/store-backends.ts";

describe("RedisScript", () => {
  const redis = new Redis(REDIS_URL);
  afterAll(() => redis.quit());

  it("runs by SHA, sending the script itself only the first time the server has not seen it", async () => {
    // A script no server has cached yet: its text is unique to this run.
    const script = new RedisScript(`return {KEYS[1], ARGV[1], '${randomUUID()}'}`);
    await redis.ping();
    const sent = recordCommands(redis);
    expect(await script.run(redis, ["k"], [7])).toEqual(["k", "7", expect.any(String)]);
    expect(sent).toEqual(["evalsha", "eval"]);
    sent.length = 0;
    expect(await script.run(redis, ["k"], [8])).toEqual(["k", "8", expect.any(String)]);
    expect(sent).toEqual(["evalsha"]);
  });

  it("passes a script's own error through", async () => {
    const script = new RedisScript(`return redis.error_reply('MINE ${randomUUID()}')`);
    await expect(script.run(redis, [], [])).rejects.toThrow(/MINE/);
  });
});
