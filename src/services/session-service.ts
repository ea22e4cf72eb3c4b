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
import type { AgentRegistry } from "../agents/registry.ts";
import { invalidArgument, notFound } from "../errors.ts";
import type { SessionManager } from "../sessions/manager.ts";
import type { ServiceImpl } from "../transport/types.ts";
import { toCheckpoint, toSession } from "./convert.ts";

/** SessionService: proto in, SessionManager, proto out. */
export function sessionService(sessions: SessionManager, agents: AgentRegistry): ServiceImpl<typeof SessionService.method> {
  return {
    async createSession(req) {
      if (!req.agentId) throw invalidArgument("agent_id", "is required");
      if (!agents.get(req.agentId)) throw notFound("agent", req.agentId);
      const session = await sessions.create(req.userId, req.agentId, req.metadata, req.ttlSeconds);
      return create(CreateSessionResponseSchema, { session: toSession(session) });
    },

    async getSession(req) {
      return create(GetSessionResponseSchema, { session: toSession(await sessions.get(req.sessionId, req.userId)) });
    },

    async listSessions(req) {
      const page = await sessions.list(req.userId, req.pageSize, req.pageToken);
      return create(ListSessionsResponseSchema, { sessions: page.items.map(toSession), nextPageToken: page.nextPageToken });
    },

    async deleteSession(req) {
      await sessions.delete(req.sessionId, req.userId);
      return create(DeleteSessionResponseSchema);
    },

    async saveCheckpoint(req) {
      const checkpoint = await sessions.saveCheckpoint(req.sessionId, req.userId, req.data ?? {}, Number(req.expectedVersion));
      return create(SaveCheckpointResponseSchema, { checkpoint: toCheckpoint(checkpoint) });
    },

    async getCheckpoint(req) {
      const checkpoint = await sessions.getCheckpoint(req.sessionId, req.userId, req.checkpointId);
      return create(GetCheckpointResponseSchema, { checkpoint: toCheckpoint(checkpoint) });
    },

    async listCheckpoints(req) {
      const page = await sessions.listCheckpoints(req.sessionId, req.userId, req.pageSize, req.pageToken);
      return create(ListCheckpointsResponseSchema, { checkpoints: page.items.map(toCheckpoint), nextPageToken: page.nextPageToken });
    },
  };
}
