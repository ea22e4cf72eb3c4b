import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** One of the HTTP port's framed forms (ConnectStreams, ConnectUnary), as HttpTransport mounts it. */
export interface Form {
  handles(req: IncomingMessage): boolean;
  serve(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

const servers: Server[] = [];

/** `form` in front of a 404 standing for connect-node, on a real HTTP/1.1 server; `handled` counts the requests it took. */
export async function serveForm(form: Form): Promise<{ base: string; handled: () => number }> {
  let handled = 0;
  const server = createServer((req, res) => {
    if (!form.handles(req)) return void res.writeHead(404).end();
    handled++;
    void form.serve(req, res);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, handled: () => handled };
}

/** Stops every server serveForm started (for afterEach). */
export async function closeFormServers(): Promise<void> {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}
