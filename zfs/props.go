package zfs

import (
	"context"
	"fmt"
	"strings"
)

// CheckUserProperty rejects names that are not zfs user properties: 1 to
// 256 characters of a-z 0-9 : - . _ with at least one ':' and not
// starting with '-' (zfsprops(7) "User Properties"). Errors wrap
// [ErrInvalidName].
func CheckUserProperty(prop string) error {
	if prop == "" || len(prop) > 256 || prop[0] == '-' || !strings.Contains(prop, ":") {
		return fmt.Errorf("user property %q: %w", prop, ErrInvalidName)
	}
	for _, c := range prop {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ':' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("user property %q: %w", prop, ErrInvalidName)
		}
	}
	return nil
}

// SetUserProperty runs `zfs set prop=value dataset`. value must not hold
// a tab or a newline (it could not be read back from `zfs get -H`) and is
// at most 8191 bytes. Errors: [ErrDatasetNotFound], [ErrInvalidName].
func (r *Runner) SetUserProperty(ctx context.Context, dataset, prop, value string) error {
	if err := CheckDatasetName(dataset); err != nil {
		return err
	}
	if err := CheckUserProperty(prop); err != nil {
		return err
	}
	if strings.ContainsAny(value, "\t\n") || len(value) >= 8192 {
		return fmt.Errorf("value of %s: tab, newline or over 8191 bytes: %w", prop, ErrInvalidName)
	}
	return r.Run(ctx, BinZFS, []string{"set", prop + "=" + value, dataset}, dataset, nil, nil)
}

// InheritUserProperty runs `zfs inherit prop dataset`, which removes a
// locally set user property. Errors: [ErrDatasetNotFound].
func (r *Runner) InheritUserProperty(ctx context.Context, dataset, prop string) error {
	if err := CheckDatasetName(dataset); err != nil {
		return err
	}
	if err := CheckUserProperty(prop); err != nil {
		return err
	}
	return r.Run(ctx, BinZFS, []string{"inherit", prop, dataset}, dataset, nil, nil)
}

// UserProperties returns the user properties set locally on dataset whose
// names start with prefix, from `zfs get -Hp -s local -o property,value
// all DATASET` (native properties have no ':' and are skipped). Errors:
// [ErrDatasetNotFound], [ErrSyntax].
func (r *Runner) UserProperties(ctx context.Context, dataset, prefix string) (map[string]string, error) {
	if err := CheckDatasetName(dataset); err != nil {
		return nil, err
	}
	out, err := r.output(ctx, dataset, "get", "-Hp", "-s", "local", "-o", "property,value", "all", dataset)
	if err != nil {
		return nil, err
	}
	m, err := ParseGet(out)
	if err != nil {
		return nil, err
	}
	for k := range m {
		if !strings.Contains(k, ":") || !strings.HasPrefix(k, prefix) {
			delete(m, k)
		}
	}
	return m, nil
}
