import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";

/** PEM material for both ports, read and checked at start. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** Set: clients must present a certificate this CA signed (mutual TLS). */
  clientCa?: Buffer;
}

/**
 * Reads `server.tls` (paths relative to the config file's folder) and checks
 * that each file parses and that the key belongs to the certificate, so a bad
 * file stops start-up (exit status 2) naming the key and the file, instead of
 * every handshake failing later.
 */
export function loadTls(tls: Config["server"]["tls"], baseDir: string): TlsMaterial | undefined {
  if (!tls) return undefined;
  const read = (key: string, path: string) => {
    const file = resolve(baseDir, path);
    try {
      return { file, pem: readFileSync(file) };
    } catch (err) {
      throw new ConfigError(`invalid config: server.tls.${key}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const bad = (key: string, file: string, err: unknown) =>
    new ConfigError(
      `invalid config: server.tls.${key}: ${file} is not a usable PEM ${key === "key" ? "private key" : "certificate"}: ${(err as Error).message}`,
      { cause: err },
    );
  const cert = read("cert", tls.cert);
  const key = read("key", tls.key);
  const clientCa = tls.clientCa === undefined ? undefined : read("clientCa", tls.clientCa);
  let certificate: X509Certificate;
  let privateKey: KeyObject;
  try {
    certificate = new X509Certificate(cert.pem);
  } catch (err) {
    throw bad("cert", cert.file, err);
  }
  try {
    privateKey = createPrivateKey(key.pem);
  } catch (err) {
    throw bad("key", key.file, err);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new ConfigError(`invalid config: server.tls.key: ${key.file} is not the private key of the certificate in ${cert.file}`);
  }
  if (clientCa) {
    try {
      new X509Certificate(clientCa.pem);
    } catch (err) {
      throw bad("clientCa", clientCa.file, err);
    }
  }
  return { cert: cert.pem, key: key.pem, clientCa: clientCa?.pem };
}
