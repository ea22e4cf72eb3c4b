// A small MCP server over stdio: the runtime starts it (config tools.mcp.notes) and stops it,
// with its whole process group, at shutdown and reload. Tools: add_note, list_notes.
import { McpServer, fromJsonSchema } from "@modelcontextprotocol/server";
import { StdioServerTransport } from "@modelcontextprotocol/server/stdio";

const notes = [];
const server = new McpServer({ name: "notes", version: "1.0.0" });

server.registerTool(
  "add_note",
  { description: "Saves a note", inputSchema: fromJsonSchema({ type: "object", properties: { text: { type: "string" } }, required: ["text"] }) },
  ({ text }) => {
    notes.push(text);
    return { content: [{ type: "text", text: `saved note ${notes.length}` }] };
  },
);

server.registerTool(
  "list_notes",
  { description: "Lists the saved notes", inputSchema: fromJsonSchema({ type: "object", properties: {} }), annotations: { idempotentHint: true } },
  () => ({
    content: [{ type: "text", text: notes.length ? notes.map((n, i) => `${i + 1}. ${n}`).join("\n") : "no notes" }],
  }),
);

await server.connect(new StdioServerTransport());
