package store

// The generated code in storepb is committed; CI does not regenerate it.
// After editing storepb/store.proto, regenerate with protoc (3.21 or later),
// protoc-gen-go and protoc-gen-go-grpc on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	go generate ./comm/store/
//
// The proto is compiled from the module root so that it registers as
// "comm/store/storepb/store.proto", a path unlikely to collide in the global
// protobuf registry.
//
//go:generate protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative --go-grpc_out=../.. --go-grpc_opt=paths=source_relative comm/store/storepb/store.proto
