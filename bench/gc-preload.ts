// Loaded (--import) into the servers of the idle-streams phase, which also get
// --expose-gc: SIGUSR2 runs a full garbage collection, so the bench reads their
// RSS with the garbage of opening 10,000 calls gone, and not just whenever V8
// happened to collect. Nothing else changes; SIGUSR2 is free in both servers.
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("bench/gc-preload.ts needs node --expose-gc");
process.on("SIGUSR2", () => {
  gc(); // twice: the first can leave objects that only die once their finalizers ran
  gc();
});
