import { invalidArgument, notFound } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import {
  CreateSessionResponseSchema,
  DeleteSessionResponseSchema,
  GetCheckpointResponseSchema,
  GetSessionResponseSchema,
  ListCheckpointsResponseSchema,
  ListSessionsResponseSchema,
  SaveCheckpointResponseSchema,
  SessionService,
} from "../gen/qingyu/agent/v1/session_pb.ts";
import type { LiveRuntime } from "../plugin-host/live-runtime.ts";
import type { SessionManager } from "../sessions/manager.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { toCheckpoint, toSession } from "./convert.ts";
import { admitted, type Admitted } from "./scope.ts";

const SERVICE = SessionService.typeName;

// Whose sessions a call may touch: the acting user's, or anyone's for an admin that named no user.
function owner({ principal, user }: Admitted): string {
  return principal?.admin && user === principal.id ? "" : user;
}

/**
 * SessionService: proto in, SessionManager, proto out. Every RPC passes the
 * pipeline's admit hooks; with auth configured the principal is the user, so
 * one user can neither read, list, checkpoint nor delete another's sessions.
 */
export function sessionService(sessions: SessionManager, live: LiveRuntime): ServiceImpl<typeof SessionService.method> {
  return {
    createSession(req, call) {
      return admitted(live, call, { service: SERVICE, method: "CreateSession", userId: req.userId }, async ({ gen, user }) => {
        if (!req.agentId) throw invalidArgument("agent_id", "is required");
        if (!gen.parts.agents.get(req.agentId)) throw notFound("agent", req.agentId);
        const session = await sessions.create(user, req.agentId, req.metadata, req.ttlSeconds);
        return create(CreateSessionResponseSchema, { session: toSession(session) });
      });
    },

    getSession(req, call) {
      return admitted(live, call, { service: SERVICE, method: "GetSession", userId: req.userId }, async (a) =>
        create(GetSessionResponseSchema, { session: toSession(await sessions.read(req.sessionId, owner(a))) }),
      );
    },

    listSessions(req, call) {
      return admitted(live, call, { service: SERVICE, method: "ListSessions", userId: req.userId }, async ({ user }) => {
        const page = await sessions.list(user, req.pageSize, req.pageToken);
        return create(ListSessionsResponseSchema, { sessions: page.items.map(toSession), nextPageToken: page.nextPageToken });
      });
    },

    deleteSession(req, call) {
      return admitted(live, call, { service: SERVICE, method: "DeleteSession", userId: req.userId }, async (a) => {
        await sessions.delete(req.sessionId, owner(a));
        return create(DeleteSessionResponseSchema);
      });
    },

    saveCheckpoint(req, call) {
      return admitted(live, call, { service: SERVICE, method: "SaveCheckpoint", userId: req.userId }, async (a) => {
        const checkpoint = await sessions.saveCheckpoint(req.sessionId, owner(a), req.data ?? {}, req.expectedVersion === undefined ? undefined : Number(req.expectedVersion));
        return create(SaveCheckpointResponseSchema, { checkpoint: toCheckpoint(checkpoint) });
      });
    },

    getCheckpoint(req, call) {
      return admitted(live, call, { service: SERVICE, method: "GetCheckpoint", userId: req.userId }, async (a) => {
        const checkpoint = await sessions.getCheckpoint(req.sessionId, owner(a), req.checkpointId);
        return create(GetCheckpointResponseSchema, { checkpoint: toCheckpoint(checkpoint) });
      });
    },

    listCheckpoints(req, call) {
      return admitted(live, call, { service: SERVICE, method: "ListCheckpoints", userId: req.userId }, async (a) => {
        const page = await sessions.listCheckpoints(req.sessionId, owner(a), req.pageSize, req.pageToken);
        return create(ListCheckpointsResponseSchema, { checkpoints: page.items.map(toCheckpoint), nextPageToken: page.nextPageToken });
      });
    },
  };
}
