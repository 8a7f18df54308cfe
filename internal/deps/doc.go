// Package deps pins the project's direct dependencies in go.mod while the
// packages that use them are being written. It is removed once every
// dependency is imported by real code.
package deps
