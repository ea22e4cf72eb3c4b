import { invalidArgument } from "@qingyu/plugin-api";
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
import { sessionOwner } from "../pipeline/acting.ts";
import { checkCheckpointData } from "./checkpoint-data.ts";
import { ids } from "./ids.ts";
import { admitted, type Admitted } from "./scope.ts";

const SERVICE = SessionService.typeName;

// Whose sessions a call may touch (an anonymous caller: none).
const owner = (a: Admitted) => sessionOwner(a, a.user);

/**
 * SessionService: proto in, SessionManager, proto out. Every RPC passes the
 * pipeline's admit hooks; with auth configured the principal is the user, so
 * one user can neither read, list, checkpoint nor delete another's sessions.
 */
export function sessionService(sessions: SessionManager, live: LiveRuntime): ServiceImpl<typeof SessionService.method> {
  return {
    createSession(req, call) {
      const userId = ids.user(req.userId);
      const agentId = ids.agent(req.agentId);
      return admitted(live, call, { service: SERVICE, method: "CreateSession", userId }, async (a) => {
        const user = owner(a) || a.user;
        if (!agentId) throw invalidArgument("agent_id", "is required");
        if (!a.gen.parts.agents.get(agentId)) throw a.gen.parts.agents.refusal(agentId);
        const session = await sessions.create(user, agentId, req.metadata, req.ttlSeconds);
        return create(CreateSessionResponseSchema, { session: toSession(session) });
      });
    },

    getSession(req, call) {
      const sessionId = ids.session(req.sessionId);
      return admitted(live, call, { service: SERVICE, method: "GetSession", userId: ids.user(req.userId) }, async (a) =>
        create(GetSessionResponseSchema, { session: toSession(await sessions.read(sessionId, owner(a))) }),
      );
    },

    listSessions(req, call) {
      const pageToken = ids.pageToken(req.pageToken);
      return admitted(live, call, { service: SERVICE, method: "ListSessions", userId: ids.user(req.userId) }, async (a) => {
        owner(a);
        const page = await sessions.list(a.user, req.pageSize, pageToken);
        return create(ListSessionsResponseSchema, { sessions: page.items.map(toSession), nextPageToken: page.nextPageToken });
      });
    },

    deleteSession(req, call) {
      const sessionId = ids.session(req.sessionId);
      return admitted(live, call, { service: SERVICE, method: "DeleteSession", userId: ids.user(req.userId) }, async (a) => {
        await sessions.delete(sessionId, owner(a));
        return create(DeleteSessionResponseSchema);
      });
    },

    saveCheckpoint(req, call) {
      const sessionId = ids.session(req.sessionId);
      const expectedVersion = ids.version(req.expectedVersion);
      return admitted(live, call, { service: SERVICE, method: "SaveCheckpoint", userId: ids.user(req.userId) }, async (a) => {
        const data = req.data ?? {};
        checkCheckpointData(data);
        const checkpoint = await sessions.saveCheckpoint(sessionId, owner(a), data, expectedVersion);
        return create(SaveCheckpointResponseSchema, { checkpoint: toCheckpoint(checkpoint) });
      });
    },

    getCheckpoint(req, call) {
      const sessionId = ids.session(req.sessionId);
      const checkpointId = ids.checkpoint(req.checkpointId);
      return admitted(live, call, { service: SERVICE, method: "GetCheckpoint", userId: ids.user(req.userId) }, async (a) => {
        const checkpoint = await sessions.getCheckpoint(sessionId, owner(a), checkpointId);
        return create(GetCheckpointResponseSchema, { checkpoint: toCheckpoint(checkpoint) });
      });
    },

    listCheckpoints(req, call) {
      const sessionId = ids.session(req.sessionId);
      const pageToken = ids.pageToken(req.pageToken);
      return admitted(live, call, { service: SERVICE, method: "ListCheckpoints", userId: ids.user(req.userId) }, async (a) => {
        const page = await sessions.listCheckpoints(sessionId, owner(a), req.pageSize, pageToken);
        return create(ListCheckpointsResponseSchema, { checkpoints: page.items.map(toCheckpoint), nextPageToken: page.nextPageToken });
      });
    },
  };
}
