import { create, toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import { loadFileDescriptorSetFromBuffer } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import type { HostedService } from "./types.ts";

/**
 * Serves gRPC server reflection (v1 and v1alpha) for the hosted services, from
 * the descriptors compiled into the generated code, so grpcurl needs no protos.
 */
export function addReflection(server: grpc.Server, services: readonly HostedService[]): void {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file.name)) return;
    for (const dep of file.dependencies) visit(dep);
    files.set(file.name, file);
  };
  for (const { service } of services) visit(service.file);
  const set = create(FileDescriptorSetSchema, { file: [...files.values()].map((f) => f.proto) });
  const packageDefinition = loadFileDescriptorSetFromBuffer(Buffer.from(toBinary(FileDescriptorSetSchema, set)));
  new ReflectionService(packageDefinition).addToServer(server);
}
