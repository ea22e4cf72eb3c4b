import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { connect as http2Connect } from "node:http2";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, ExecuteRequestSchema, ExecuteResponseSchema, type ExecuteRequest } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { statusOf } from "../support/grpc-client.ts";
import { runCli, runtime, serveFile, type ServerProcess } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";

const A = AgentService.method;
const dir = tempDir("qingyu-tls-");
const pem = (name: string) => readFileSync(join(dir, name));

/** A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and a client certificate of another CA. */
function makeCertificates(): void {
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  for (const ca of ["ca", "rogue-ca"]) openssl("req", "-x509", ...ec, "-keyout", `${ca}.key`, "-out", `${ca}.pem`, "-days", "1", "-subj", `/CN=${ca}`);
  const issue = (name: string, ca: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    openssl(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${ca}.pem`,
      "-CAkey",
      `${ca}.key`,
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "1",
      "-extfile",
      `${name}.ext`,
    );
  };
  issue("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  issue("client", "ca", "extendedKeyUsage=clientAuth\n");
  issue("rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n");
  writeFileSync(join(dir, "junk.pem"), "not a certificate\n");
}

const base = { log: { level: "warn" }, agents: [{ id: "echo", provider: "echo", model: "echo-1" }], plugins: { dirs: [] } };

/** Serves a config written next to the certificates, so its relative paths resolve there. */
function serveWithTls(name: string, tls: Record<string, string>): Promise<ServerProcess> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ ...base, server: { host: "127.0.0.1", tls } }));
  return serveFile(file, ["--port", "0", "--http-port", "0"]);
}

type ClientCert = { cert: Buffer; key: Buffer } | undefined;

/** Execute on a fresh grpc-js channel (no connection reused between cases); resolves with the output. */
function grpcExecute(port: number, creds: grpc.ChannelCredentials, task: string, body?: Buffer) {
  // The certificate names localhost; the name is checked, the address stays IPv4.
  const client = new grpc.Client(`127.0.0.1:${port}`, creds, { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" });
  return new Promise<string>((resolve, reject) => {
    client.makeUnaryRequest(
      `/${AgentService.typeName}/${A.execute.name}`,
      (m: ExecuteRequest) => body ?? Buffer.from(toBinary(ExecuteRequestSchema, m)),
      (b: Buffer) => fromBinary(ExecuteResponseSchema, b),
      create(ExecuteRequestSchema, { agentId: "echo", task }),
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err, res) => {
        client.close();
        return err ? reject(err) : resolve(res!.result?.output ?? "");
      },
    );
  });
}

const sslCreds = (cert?: ClientCert) => grpc.credentials.createSsl(pem("ca.pem"), cert?.key ?? null, cert?.cert ?? null);

/** Connect JSON over HTTP/1.1 + TLS with node:https, trusting only the test CA. */
function httpsExecute(port: number, task: string, cert?: ClientCert): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        servername: "localhost",
        port,
        method: "POST",
        path: "/qingyu.agent.v1.AgentService/Execute",
        headers: { "content-type": "application/json" },
        ca: pem("ca.pem"),
        ...cert,
      },
      (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ agentId: "echo", task }));
  });
}

describe(`TLS on both ports (server on ${runtime})`, () => {
  let server: ServerProcess;
  beforeAll(async () => {
    makeCertificates();
    server = await serveWithTls("tls", { cert: "server.pem", key: "server.key" });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("serves gRPC over TLS to a client trusting the CA, and refuses a plaintext client", async () => {
    expect(await grpcExecute(server.grpcPort, sslCreds(), "secure")).toContain("[history=0] secure");
    const plain = await statusOf(grpcExecute(server.grpcPort, grpc.credentials.createInsecure(), "plain"));
    expect(plain.code).toBe(grpc.status.UNAVAILABLE);
  });

  it("serves Connect JSON over HTTPS (HTTP/1.1) and Connect over HTTP/2 with TLS on the HTTP port", async () => {
    expect(await httpsExecute(server.httpPort, "over https")).toMatchObject({ status: 200, body: { result: { output: "[history=0] over https" } } });
    const transport = createConnectTransport({
      baseUrl: `https://127.0.0.1:${server.httpPort}`,
      httpVersion: "2",
      nodeOptions: { ca: pem("ca.pem"), servername: "localhost" },
    });
    const res = await createClient(AgentService, transport).execute({ agentId: "echo", task: "over h2" });
    expect(res.result?.output).toBe("[history=0] over h2");
    // Plain HTTP to the TLS port gets no answer.
    await expect(fetch(`http://127.0.0.1:${server.httpPort}/qingyu.agent.v1.AgentService/Execute`, { method: "POST", body: "{}" })).rejects.toThrow();
  });

  it("serves gRPC on the HTTP port too; bytes that are not the request message are INVALID_ARGUMENT there as on the gRPC port", async () => {
    expect(await grpcExecute(server.httpPort, sslCreds(), "grpc on http port")).toContain("[history=0] grpc on http port");
    for (const port of [server.grpcPort, server.httpPort]) {
      const bad = await statusOf(grpcExecute(port, sslCreds(), "", Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])));
      expect(bad.code, `port ${port}`).toBe(grpc.status.INVALID_ARGUMENT);
      expect(bad.details).toContain("is not a valid qingyu.agent.v1.ExecuteRequest message");
    }
  });

  it("advertises maxConcurrentStreams on the HTTP port's HTTP/2", async () => {
    const session = http2Connect(`https://127.0.0.1:${server.httpPort}`, { ca: pem("ca.pem"), servername: "localhost" });
    const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve, reject) => {
      session.once("remoteSettings", resolve);
      session.once("error", reject);
    });
    session.destroy();
    expect(settings.maxConcurrentStreams).toBe(100);
  });
});

describe(`mutual TLS (server on ${runtime})`, () => {
  let server: ServerProcess;
  const client = () => ({ cert: pem("client.pem"), key: pem("client.key") });
  const rogue = () => ({ cert: pem("rogue.pem"), key: pem("rogue.key") });
  beforeAll(async () => {
    server = await serveWithTls("mtls", { cert: "server.pem", key: "server.key", clientCa: "ca.pem" });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("on the gRPC port: a client certificate signed by clientCa is required", async () => {
    expect(await grpcExecute(server.grpcPort, sslCreds(client()), "with cert")).toContain("with cert");
    for (const cert of [undefined, rogue()]) {
      expect((await statusOf(grpcExecute(server.grpcPort, sslCreds(cert), "refused"))).code).toBe(grpc.status.UNAVAILABLE);
    }
  });

  it("on the HTTP port: the same", async () => {
    expect(await httpsExecute(server.httpPort, "with cert", client())).toMatchObject({ status: 200, body: { result: { output: "[history=0] with cert" } } });
    await expect(httpsExecute(server.httpPort, "no cert")).rejects.toThrow();
    await expect(httpsExecute(server.httpPort, "rogue cert", rogue())).rejects.toThrow();
  });
});

describe(`bad TLS files stop start-up (server on ${runtime})`, () => {
  const startWith = (name: string, tls: Record<string, string>) => {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify({ ...base, server: { host: "127.0.0.1", tls } }));
    return runCli(["serve", "--config", file, "--port", "0", "--http-port", "0"]);
  };

  it("exits 2 naming the key and the file", async () => {
    const [missing, junk, mismatch, badCa] = await Promise.all([
      startWith("missing", { cert: "server.pem", key: "nope.key" }),
      startWith("junk", { cert: "junk.pem", key: "server.key" }),
      startWith("mismatch", { cert: "server.pem", key: "client.key" }),
      startWith("bad-ca", { cert: "server.pem", key: "server.key", clientCa: "junk.pem" }),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`server.tls.key: cannot read ${join(dir, "nope.key")}`);
    expect(junk.code).toBe(2);
    expect(junk.stderr).toContain(`server.tls.cert: ${join(dir, "junk.pem")} is not a usable PEM certificate`);
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toContain(`server.tls.key: ${join(dir, "client.key")} is not the private key of the certificate in ${join(dir, "server.pem")}`);
    expect(badCa.code).toBe(2);
    expect(badCa.stderr).toContain(`server.tls.clientCa: ${join(dir, "junk.pem")} is not a usable PEM certificate`);
  });
});
