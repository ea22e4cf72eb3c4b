import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { AdminService, ListPluginsResponseSchema, ReloadResponseSchema } from "../gen/qingyu/agent/v1/admin_pb.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { admitted, type Admitted } from "./scope.ts";

const SERVICE = AdminService.typeName;

// With auth configured, only an admin; without any, whoever can reach the port (bind it accordingly).
function requireAdmin({ gen, principal }: Admitted): void {
  if (!gen.parts.admission.guarded) return;
  if (!principal) throw new ConnectError("AdminService needs an admin principal", Code.Unauthenticated);
  if (!principal.admin) throw new ConnectError(`principal "${principal.id}" is not an admin`, Code.PermissionDenied);
}

/** AdminService: reload and plugin listing for operators. */
export function adminService(live: LiveRuntime): ServiceImpl<typeof AdminService.method> {
  return {
    async reload(_req, call) {
      // Admission runs on the generation being replaced; the reload itself must not hold it.
      await admitted(live, call, { service: SERVICE, method: "Reload" }, async (a) => requireAdmin(a));
      try {
        const outcome = await live.reload();
        return create(ReloadResponseSchema, { generation: BigInt(outcome.generation), pipeline: [...outcome.pipeline], warnings: [...outcome.warnings] });
      } catch (err) {
        const error = new ConnectError(
          `reload failed; the running config and plugins stay: ${(err as Error).message}`,
          Code.FailedPrecondition,
          undefined,
          undefined,
          err,
        );
        throw withReason(error, ErrorReason.RELOAD_FAILED);
      }
    },

    listPlugins(_req, call) {
      return admitted(live, call, { service: SERVICE, method: "ListPlugins" }, async (a) => {
        requireAdmin(a);
        const { catalog, definitions, pipeline } = a.gen.parts;
        return create(ListPluginsResponseSchema, {
          generation: BigInt(a.gen.id),
          pipeline: [...pipeline],
          plugins: [...catalog.values()].map((e) => ({
            name: e.definition.name,
            kind: e.definition.kind,
            source: e.source,
            enabled: !e.disabled,
            inUse: definitions.has(e.definition),
          })),
        });
      });
    },
  };
}
