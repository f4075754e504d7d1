package resp

//go:generate go run ./internal/gencmds -out commands_gen.go
