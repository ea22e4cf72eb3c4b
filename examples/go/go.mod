module github.com/qingyu/agent-runtime/examples/go

go 1.19

require (
	github.com/qingyu/agent-runtime/clients/go v0.0.0
	google.golang.org/grpc v1.33.3
)

// The client lives in this repository; a backend of yours points the same replace at its checkout or vendored copy.
replace github.com/qingyu/agent-runtime/clients/go => ../../clients/go
