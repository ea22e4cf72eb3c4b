// Checkpoint data nested to a given depth, for the tests of sessions.maxCheckpointDepth.
import type { JsonObject, JsonValue } from "@qingyu/plugin-api";

/** `depth` objects, one inside the other, with a number in the last: the most protobuf messages a depth can cost. */
export function objects(depth: number): JsonObject {
  let value: JsonObject = { leaf: 1 };
  for (let i = 1; i < depth; i++) value = { a: value };
  return value;
}

/** `data` holding `depth - 1` lists, one inside the other. */
export function lists(depth: number): JsonObject {
  let value: JsonValue = [1];
  for (let i = 2; i < depth; i++) value = [value];
  return { a: value };
}
