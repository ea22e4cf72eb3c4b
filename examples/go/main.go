// Command tour shows the four things a backend does with Qingyu Agent Runtime,
// from Go with grpc-go and the generated client in clients/go
// (github.com/qingyu/agent-runtime/clients/go/qingyu/agent/v1):
//
//	cd examples/go && go mod tidy && go run . 127.0.0.1:50051
//
// It needs the `echo` agent, as config/example.yaml has. It prints one line per
// step and exits non-zero when the server answers something other than expected.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	agentv1 "github.com/qingyu/agent-runtime/clients/go/qingyu/agent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Every call gets a deadline.
const timeout = 10 * time.Second

func main() {
	target := "127.0.0.1:50051"
	if len(os.Args) > 1 {
		target = os.Args[1]
	}
	// Plaintext, as `npm start` serves; grpc-go ≥ 1.34 spells it
	// grpc.WithTransportCredentials(insecure.NewCredentials()).
	conn, err := grpc.Dial(target, grpc.WithInsecure())
	if err != nil {
		log.Fatalf("dial %s: %v", target, err)
	}
	defer conn.Close()
	agents := agentv1.NewAgentServiceClient(conn)
	sessions := agentv1.NewSessionServiceClient(conn)

	execute(agents)
	streamThenCancel(agents)
	twoTurns(agents, sessions)
	errorCodes(agents, sessions)
	fmt.Println("done")
}

func execute(agents agentv1.AgentServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	reply, err := agents.Execute(ctx, &agentv1.ExecuteRequest{AgentId: "echo", Task: "hello from go"})
	if err != nil {
		log.Fatalf("Execute: %v", err)
	}
	fmt.Printf("execute: %s\n", reply.GetResult().GetOutput())
}

func streamThenCancel(agents agentv1.AgentServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := agents.ExecuteStream(ctx, &agentv1.ExecuteStreamRequest{AgentId: "echo", Task: "a long answer we stop early"})
	if err != nil {
		log.Fatalf("ExecuteStream: %v", err)
	}
	var kinds []string
	var first *string
	for {
		event, err := stream.Recv()
		if err == io.EOF {
			// grpc-go hands out what had arrived before the cancel: the server may have finished first.
			fmt.Printf("stream: %s; first delta %q; cancelled -> OK (the server had finished first)\n", kinds[0], *first)
			return
		}
		if err != nil {
			if status.Code(err) != codes.Canceled {
				log.Fatalf("stream ended with %v after %v, not by our cancel", err, kinds)
			}
			fmt.Printf("stream: %s; first delta %q; cancelled -> %s\n", kinds[0], *first, codeName(status.Code(err)))
			return
		}
		switch e := event.GetEvent().(type) {
		case *agentv1.ExecuteStreamResponse_Started:
			kinds = append(kinds, "started")
		case *agentv1.ExecuteStreamResponse_Delta:
			kinds = append(kinds, "delta")
			if first == nil {
				first = &e.Delta.Text
				// Cancelling the context tells the server, which stops the model: no tokens for a caller who left.
				cancel()
			}
		case *agentv1.ExecuteStreamResponse_Completed:
			kinds = append(kinds, "completed")
		}
	}
}

func twoTurns(agents agentv1.AgentServiceClient, sessions agentv1.SessionServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	created, err := sessions.CreateSession(ctx, &agentv1.CreateSessionRequest{UserId: "go-user", AgentId: "echo"})
	if err != nil {
		log.Fatalf("CreateSession: %v", err)
	}
	id := created.GetSession().GetSessionId()
	fmt.Printf("session: created %s\n", id)
	for turn, task := range []string{"my name is Ada", "what is my name?"} {
		// No AgentId: the session's agent answers, with the session's history in the prompt.
		reply, err := agents.Execute(ctx, &agentv1.ExecuteRequest{SessionId: id, UserId: "go-user", Task: task})
		if err != nil {
			log.Fatalf("Execute turn %d: %v", turn+1, err)
		}
		fmt.Printf("session: turn %d -> %s\n", turn+1, reply.GetResult().GetOutput())
	}
	got, err := sessions.GetSession(ctx, &agentv1.GetSessionRequest{SessionId: id, UserId: "go-user"})
	if err != nil {
		log.Fatalf("GetSession: %v", err)
	}
	var roles []string
	for _, m := range got.GetSession().GetMessages() {
		roles = append(roles, m.GetRole())
	}
	fmt.Printf("session: GetSession has %d messages: %s\n", len(roles), strings.Join(roles, ", "))
	if len(roles) != 4 {
		log.Fatalf("expected 4 messages, got %v", roles)
	}
}

func errorCodes(agents agentv1.AgentServiceClient, sessions agentv1.SessionServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The machine-readable reason rides in the `qingyu-reason` trailer (and as a
	// google.rpc.ErrorInfo in status.Details()).
	var trailer metadata.MD
	_, err := sessions.GetSession(ctx, &agentv1.GetSessionRequest{SessionId: "00000000-0000-4000-8000-000000000000"}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.NotFound {
		log.Fatalf("GetSession(unknown id): want NOT_FOUND, got %v", err)
	}
	fmt.Printf("error: GetSession(unknown id) -> %s reason=%s\n", codeName(status.Code(err)), reason(trailer))

	trailer = nil
	_, err = agents.Execute(ctx, &agentv1.ExecuteRequest{AgentId: "echo", Task: ""}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.InvalidArgument {
		log.Fatalf("Execute(empty task): want INVALID_ARGUMENT, got %v", err)
	}
	fmt.Printf("error: Execute(empty task) -> %s reason=%s (%s)\n", codeName(status.Code(err)), reason(trailer), status.Convert(err).Message())
}

func reason(trailer metadata.MD) string {
	if values := trailer.Get("qingyu-reason"); len(values) > 0 {
		return values[0]
	}
	return ""
}

// codeNames names codes as gRPC does everywhere else (NOT_FOUND, CANCELLED), not as Go's String() (NotFound, Canceled).
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return c.String()
}
