import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ConfigError } from "../../config/load.ts";
import { ToolService, type CallToolRequestSchema, type CallToolResponse, type ListToolsResponse } from "../../gen/qingyu/agent/v1/tool_pb.ts";
import type { BackendToolsConfig } from "./config.ts";

/** What the channel needs besides the config. */
interface ChannelOptions {
  /** Where tls file paths are relative to (the config file's folder). */
  baseDir: string;
  /** Largest response message accepted; a larger one fails its call with RESOURCE_EXHAUSTED. */
  maxReceiveBytes: number;
  /** The config key, for error messages (e.g. tools.backends.billing). */
  configPath: string;
}

/**
 * One backend's ToolService channel, typed with the protobuf-es descriptors
 * (encoded with toBinary/fromBinary, as the server's grpc-js adapter does).
 */
export class ToolServiceChannel {
  private readonly client: grpc.Client;
  private readonly headers: Readonly<Record<string, string>>;

  constructor(config: BackendToolsConfig, options: ChannelOptions) {
    const { credentials, channelOptions } = security(config.tls, options);
    this.client = new grpc.Client(config.address, credentials, {
      ...channelOptions,
      "grpc.max_receive_message_length": options.maxReceiveBytes,
    });
    this.headers = config.metadata;
  }

  /** ListTools; rejects with the grpc-js ServiceError, or the signal's reason when it fires first. */
  listTools(deadline: number, signal: AbortSignal): Promise<ListToolsResponse> {
    const method = ToolService.method.listTools;
    return new Promise((resolvePromise, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      const onAbort = () => {
        call.cancel();
        reject(signal.reason as Error);
      };
      const call = this.client.makeUnaryRequest(
        path(method),
        serializer(method.input),
        deserializer(method.output),
        create(method.input),
        this.metadata(),
        { deadline },
        (err, response) => {
          signal.removeEventListener("abort", onAbort);
          if (err) reject(err);
          else resolvePromise(response!);
        },
      );
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Starts CallTool: any number of progress messages, then the output. */
  callTool(request: MessageInitShape<typeof CallToolRequestSchema>, deadline: number): grpc.ClientReadableStream<CallToolResponse> {
    const method = ToolService.method.callTool;
    return this.client.makeServerStreamRequest(
      path(method),
      serializer(method.input),
      deserializer(method.output),
      create(method.input, request),
      this.metadata(),
      { deadline },
    );
  }

  close(): void {
    this.client.close();
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(this.headers)) metadata.set(key, value);
    return metadata;
  }
}

function path(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function serializer<D extends DescMessage>(schema: D) {
  return (message: MessageShape<D>): Buffer => {
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D) {
  return (bytes: Buffer): MessageShape<D> => fromBinary(schema, bytes);
}

function security(tls: BackendToolsConfig["tls"], options: ChannelOptions): { credentials: grpc.ChannelCredentials; channelOptions: grpc.ChannelOptions } {
  if (tls === false) return { credentials: grpc.credentials.createInsecure(), channelOptions: {} };
  if (tls === true) return { credentials: grpc.credentials.createSsl(), channelOptions: {} };
  const read = (key: string, file: string | undefined) => {
    if (file === undefined) return null;
    const full = resolve(options.baseDir, file);
    try {
      return readFileSync(full);
    } catch (err) {
      throw new ConfigError(`invalid config: ${options.configPath}.tls.${key}: cannot read ${full}: ${(err as Error).message}`, { cause: err });
    }
  };
  const credentials = grpc.credentials.createSsl(read("ca", tls.ca), read("key", tls.key), read("cert", tls.cert));
  // The certificate is checked against serverName, and it is sent as SNI and :authority.
  const channelOptions: grpc.ChannelOptions = tls.serverName
    ? { "grpc.ssl_target_name_override": tls.serverName, "grpc.default_authority": tls.serverName }
    : {};
  return { credentials, channelOptions };
}
