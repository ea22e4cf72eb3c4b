import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { AdminService } from "./gen/qingyu/agent/v1/admin_pb.ts";
import { AgentService } from "./gen/qingyu/agent/v1/agent_pb.ts";
import { EventService } from "./gen/qingyu/agent/v1/event_pb.ts";
import { SessionService } from "./gen/qingyu/agent/v1/session_pb.ts";

/** One connect-es client per service of the runtime, all over the same transport. */
export interface QingyuClient {
  agents: Client<typeof AgentService>;
  sessions: Client<typeof SessionService>;
  events: Client<typeof EventService>;
  admin: Client<typeof AdminService>;
}

/**
 * Clients for every qingyu.agent.v1 service over `transport`: createGrpcTransport
 * (connect-node) for the gRPC port, or createConnectTransport / createGrpcWebTransport
 * (connect-node or connect-web) for the HTTP port.
 */
export function createQingyuClient(transport: Transport): QingyuClient {
  return {
    agents: createClient(AgentService, transport),
    sessions: createClient(SessionService, transport),
    events: createClient(EventService, transport),
    admin: createClient(AdminService, transport),
  };
}
