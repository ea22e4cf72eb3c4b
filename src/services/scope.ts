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
 * The one rule for how a unary call holds its plugin generation: the current
 * one is entered at the start and released when `fn` settles or the call is
 * aborted, whichever comes first; an aborted call is answered with its abort
 * reason at once, even while code under `fn` ignores the signal. So a reload
 * never disposes plugins under a running call, and a cancelled one never keeps
 * an old generation alive.
 */
export function onGenerationCall<T>(live: LiveRuntime, signal: AbortSignal, fn: (gen: Generation) => Promise<T>): Promise<T> {
  const gen = live.current;
  const release = hold(gen, signal);
  const work = (async () => {
    try {
      return await fn(gen);
    } finally {
      release();
    }
  })();
  return untilAborted(work, signal);
}

/** As onGenerationCall(), for a server stream: the generation is held until the stream ends or the call is aborted. */
export async function* onGeneration<T>(live: LiveRuntime, signal: AbortSignal, fn: (gen: Generation) => AsyncIterable<T>): AsyncGenerator<T> {
  const gen = live.current;
  const release = hold(gen, signal);
  try {
    yield* fn(gen);
  } finally {
    release();
  }
}

/** Runs one unary RPC held as onGenerationCall() says: its admission first (who calls, as whom), then `fn`. */
export function admitted<T>(live: LiveRuntime, call: CallInfo, rpc: Rpc, fn: (a: Admitted) => Promise<T>): Promise<T> {
  return onGenerationCall(live, call.signal, async (gen) => fn(await admit(gen, call, rpc)));
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
