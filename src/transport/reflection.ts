import { create, createRegistry, fromBinary, toBinary, type DescFile, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import {
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../gen/grpc/reflection/v1/reflection_pb.ts";
import type { HostedService } from "./types.ts";

/**
 * gRPC server reflection, v1 and v1alpha (the same messages under two
 * package names), answered from the exact descriptors compiled into the
 * generated code, so grpcurl and Postman work without the proto files.
 */
export function addReflection(server: grpc.Server, services: readonly HostedService[]): void {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file.name)) return;
    for (const dep of file.dependencies) visit(dep);
    files.set(file.name, file);
  };
  for (const { service } of services) visit(service.file);
  const registry = createRegistry(...files.values());
  const encoded = new Map([...files].map(([name, file]) => [name, toBinary(FileDescriptorProtoSchema, file.proto)]));
  const serviceNames = [...services.map((s) => s.service.typeName), "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

  // A file with everything it imports, dependencies first, as clients resolve them.
  const withDependencies = (file: DescFile): Uint8Array[] => {
    const out: DescFile[] = [];
    const walk = (f: DescFile) => {
      if (out.includes(f)) return;
      f.dependencies.forEach(walk);
      out.push(f);
    };
    walk(file);
    return out.map((f) => encoded.get(f.name)!);
  };

  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const desc = registry.get(symbol);
    if (desc && "file" in desc) return desc.file;
    // A method, or a field: the enclosing service or message names the file.
    const parent = registry.get(symbol.slice(0, symbol.lastIndexOf(".")));
    return parent && "file" in parent ? parent.file : undefined;
  };

  const answer = (req: ServerReflectionRequest): MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"] => {
    const notFound = (what: string) => ({ case: "errorResponse" as const, value: { errorCode: grpc.status.NOT_FOUND, errorMessage: `${what} not found` } });
    const found = (list: Uint8Array[]) => ({ case: "fileDescriptorResponse" as const, value: { fileDescriptorProto: list } });
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: serviceNames.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = files.get(r.value);
        return file ? found(withDependencies(file)) : notFound(`file "${r.value}"`);
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(r.value);
        return file ? found(withDependencies(file)) : notFound(`symbol "${r.value}"`);
      }
      case "allExtensionNumbersOfType":
        return registry.getMessage(r.value)
          ? { case: "allExtensionNumbersResponse", value: { baseTypeName: r.value, extensionNumber: [] } }
          : notFound(`type "${r.value}"`);
      case "fileContainingExtension":
        return notFound(`extension ${r.value.extensionNumber} of "${r.value.containingType}"`);
      default:
        return { case: "errorResponse", value: { errorCode: grpc.status.INVALID_ARGUMENT, errorMessage: "empty reflection request" } };
    }
  };

  const handler = (call: grpc.ServerDuplexStream<ServerReflectionRequest, ServerReflectionResponse>) => {
    call.on("data", (req: ServerReflectionRequest) => {
      call.write(create(ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse: answer(req) }));
    });
    call.on("end", () => call.end());
    call.on("error", () => call.end());
  };

  for (const pkg of ["grpc.reflection.v1", "grpc.reflection.v1alpha"]) {
    server.addService(
      {
        serverReflectionInfo: {
          path: `/${pkg}.ServerReflection/ServerReflectionInfo`,
          requestStream: true,
          responseStream: true,
          requestSerialize: (m: ServerReflectionRequest) => Buffer.from(toBinary(ServerReflectionRequestSchema, m)),
          requestDeserialize: (b: Buffer) => fromBinary(ServerReflectionRequestSchema, b),
          responseSerialize: (m: ServerReflectionResponse) => Buffer.from(toBinary(ServerReflectionResponseSchema, m)),
          responseDeserialize: (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b),
        },
      },
      { serverReflectionInfo: handler },
    );
  }
}
