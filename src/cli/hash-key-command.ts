import { hashApiKey } from "../plugins/builtin/auth/api-keys.ts";
import { commandArgs, UsageError } from "./args.ts";
import { usage } from "./usage.ts";

/** `qingyu hash-key [KEY]`: the SHA-256 for auth.apiKeys[].sha256; KEY from stdin when not given (out of shell history). */
export async function hashKey(args: readonly string[]): Promise<void> {
  const parsed = commandArgs("hash-key", args, {}, true);
  if (parsed.help) return void process.stdout.write(usage("hash-key"));
  let key = parsed.positionals[0];
  if (key === undefined) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    key = Buffer.concat(chunks).toString("utf8").trim();
  }
  if (!key) throw new UsageError("hash-key: no key given", "hash-key");
  process.stdout.write(`${hashApiKey(key)}\n`);
}
