package dm

import (
	"errors"
	"fmt"
)

// Sentinels of the pure half of the package (tables, targets, status).
var (
	// ErrSyntax reports table or status text that is not in the form the
	// kernel prints. The wrapping error quotes the offending text.
	ErrSyntax = errors.New("invalid syntax")

	// ErrInvalidTable reports a table or target that breaks a rule the
	// kernel (or dmsnap's policy for new snapshots) enforces, such as a gap
	// between segments or discard_passdown_origin without
	// discard_zeroes_cow.
	ErrInvalidTable = errors.New("invalid table")

	// ErrUnknownTarget reports a target type this package has no typed
	// form for (thin, crypt, ...). Callers that only display such targets
	// can keep the raw [TargetLine] instead.
	ErrUnknownTarget = errors.New("unknown target type")
)

// syntaxErrorf returns an error wrapping [ErrSyntax]; callers quote the
// offending text with %q.
func syntaxErrorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrSyntax)
}

// invalidf returns an error wrapping [ErrInvalidTable].
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidTable)
}
