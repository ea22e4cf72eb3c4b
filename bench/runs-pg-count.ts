// Preloaded into the runs phase's servers (`--import bench/runs-pg-count.ts`):
// counts every PostgreSQL round trip the server makes, by statement text, with
// the time each took from the query to its answer, and serves the totals as
// JSON on 127.0.0.1:$BENCH_RUNS_COUNT_PORT. pg_stat_statements is not loaded on
// the machine's PostgreSQL, and per-statement counts must be this server's
// alone, so they are taken at pg.Client.query, which every pool query goes through.
import { createServer } from "node:http";
import pg from "pg";

/** Round trips of one statement text so far. */
export interface StatementCount {
  n: number;
  ms: number;
}

const counts = new Map<string, StatementCount>();

function record(text: string, ms: number): void {
  const c = counts.get(text);
  if (c) {
    c.n++;
    c.ms += ms;
  } else counts.set(text, { n: 1, ms });
}

type Query = (this: pg.Client, ...args: unknown[]) => unknown;
const original = pg.Client.prototype.query as unknown as Query;

// pg-pool calls client.query(text, values, callback); code holding a client may use the promise form.
(pg.Client.prototype as unknown as { query: Query }).query = function (this: pg.Client, ...args: unknown[]) {
  const first = args[0] as string | { text?: string } | undefined;
  const text = typeof first === "string" ? first : (first?.text ?? "(submittable)");
  const t0 = performance.now();
  const done = () => record(text, performance.now() - t0);
  const last = args.findLastIndex((a) => typeof a === "function");
  if (last > 0) {
    const callback = args[last] as (...a: unknown[]) => void;
    args[last] = (...a: unknown[]) => {
      done();
      callback(...a);
    };
    return original.apply(this, args);
  }
  const result = original.apply(this, args);
  if (result && typeof (result as Promise<unknown>).then === "function") (result as Promise<unknown>).then(done, done);
  else done();
  return result;
};

const port = Number(process.env.BENCH_RUNS_COUNT_PORT);
if (port > 0) {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(Object.fromEntries(counts)));
  });
  server.listen(port, "127.0.0.1");
  server.unref();
}
