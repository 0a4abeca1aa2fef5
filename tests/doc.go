// Package tests holds multi-process integration tests that run real jobs through the real
// launcher (gccl run), the way users run them.
package tests
