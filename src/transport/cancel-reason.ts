import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";

/** The reason a call's signal carries when its deadline passes. */
export function deadlineExceeded(): ConnectError {
  return withReason(new ConnectError("the deadline passed before the call finished", Code.DeadlineExceeded), ErrorReason.DEADLINE_EXCEEDED);
}

/**
 * Why a call ended before it finished, when the transport only says "ended":
 * past its deadline (with 1 ms of slack for timer granularity), or the client left.
 */
export function endedEarly(deadline: number | undefined, now = Date.now()): ConnectError {
  if (deadline !== undefined && now >= deadline - 1) return deadlineExceeded();
  return withReason(new ConnectError("the client cancelled the call", Code.Canceled), ErrorReason.CANCELLED);
}
