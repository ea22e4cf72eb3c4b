module github.com/qingyu/agent-runtime/clients/go

go 1.19

// The oldest versions the generated code builds against (protoc-gen-go 1.28, protoc-gen-go-grpc 1.0,
// as Debian bookworm packages them); your module's newer ones win.
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
