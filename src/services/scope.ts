import { callUser, type Caller, isAnonymous } from "../pipeline/acting.ts";
import { untilAborted } from "../abort.ts";
import type { CallInfo } from "../executor/context.ts";
import type { Generation } from "../plugin-host/generation.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";

/** A call's generation and who is calling. */
export interface Admitted extends Caller {
  gen: Generation;
  /** The user the call acts as (see callUser). */
  user: string;
  /** Auth is configured and let this call through without credentials (allowAnonymous). */
  anonymous: boolean;
}

type Rpc = { service: string; method: string; userId?: string };

// The one admission of an RPC: the generation's admit hooks, then who the call acts as.
async function admit(gen: Generation, call: CallInfo, rpc: Rpc): Promise<Admitted> {
  const caller: Caller = { guarded: gen.parts.admission.guarded, principal: await gen.parts.admission.admit(call, rpc.service, rpc.method) };
  return { gen, ...caller, user: callUser(caller, rpc.userId ?? ""), anonymous: isAnonymous(caller) };
}

/**
 * Runs one unary RPC on the current generation: its admit hooks first, then
 * `fn`. The generation is held until `fn` settles, so a reload never disposes
 * plugins under a running call.
 */
export async function admitted<T>(
  live: LiveRuntime,
  call: CallInfo,
  rpc: Rpc,
  fn: (a: Admitted) => Promise<T>,
): Promise<T> {
  const gen = live.current;
  gen.enter();
  try {
    return await fn(await admit(gen, call, rpc));
  } finally {
    gen.leave();
  }
}

/** As admitted(), for a server stream: the generation is held until the stream ends or the call is aborted. */
export async function* admittedStream<T>(
  live: LiveRuntime,
  call: CallInfo,
  rpc: Rpc,
  fn: (a: Admitted) => AsyncIterable<T>,
): AsyncGenerator<T> {
  const gen = live.current;
  const release = hold(gen, call.signal);
  try {
    yield* fn(await admit(gen, call, rpc));
  } finally {
    release();
  }
}

/**
 * As admitted(), for a unary call that runs agents (ExecuteBatch): the
 * generation is released, and the call answered with its abort reason, as
 * soon as the call is aborted, even when code under `fn` ignores the signal.
 */
export function admittedRun<T>(
  live: LiveRuntime,
  call: CallInfo,
  rpc: Rpc,
  fn: (a: Admitted) => Promise<T>,
): Promise<T> {
  const gen = live.current;
  const release = hold(gen, call.signal);
  const work = (async () => {
    try {
      return await fn(await admit(gen, call, rpc));
    } finally {
      release();
    }
  })();
  return untilAborted(work, call.signal);
}

/** Holds the current generation for an agent run (its onion does its own admission), as admittedStream(). */
export async function* onGeneration<T>(live: LiveRuntime, signal: AbortSignal, fn: (gen: Generation) => AsyncIterable<T>): AsyncGenerator<T> {
  const gen = live.current;
  const release = hold(gen, signal);
  try {
    yield* fn(gen);
  } finally {
    release();
  }
}

/**
 * Enters `gen` and returns its one release. The release also runs when the call
 * is aborted: a stream stuck in code that ignores the signal never reaches its
 * `finally`, and must not keep an old generation (and its plugins) alive after
 * its client is gone. That code's late output goes nowhere: the transport has
 * already answered the call.
 */
function hold(gen: Generation, signal: AbortSignal): () => void {
  gen.enter();
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    signal.removeEventListener("abort", release);
    gen.leave();
  };
  if (signal.aborted) queueMicrotask(release);
  else signal.addEventListener("abort", release, { once: true });
  return release;
}
