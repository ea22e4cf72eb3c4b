import { ConnectError } from "@qingyu/plugin-api";
import { expect } from "vitest";

/** The ConnectError a promise rejects with; fails the test when it resolves or rejects with anything else. */
export async function rejection(run: Promise<unknown>): Promise<ConnectError> {
  const err = await run.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}
