package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
)

// The state file is rewritten by every version of dmsnap: keys this
// version does not know (written by a newer one) are kept on rewrite,
// at the top level and in each pool's entry, instead of being dropped.

func (s *state) UnmarshalJSON(b []byte) error {
	type plain state
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	var err error
	s.unknown, err = unknownKeys(b, reflect.TypeOf(plain{}))
	return err
}

func (s state) MarshalJSON() ([]byte, error) {
	type plain state
	return marshalWithUnknown((*plain)(&s), s.unknown)
}

func (p *statePool) UnmarshalJSON(b []byte) error {
	type plain statePool
	if err := json.Unmarshal(b, (*plain)(p)); err != nil {
		return err
	}
	var err error
	p.unknown, err = unknownKeys(b, reflect.TypeOf(plain{}))
	return err
}

func (p statePool) MarshalJSON() ([]byte, error) {
	type plain statePool
	return marshalWithUnknown((*plain)(&p), p.unknown)
}

// unknownKeys returns the members of the JSON object b that no field of
// the struct type t names; nil when there are none.
func unknownKeys(b []byte, t reflect.Type) (map[string]json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for i := 0; i < t.NumField(); i++ {
		if !t.Field(i).IsExported() {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		// encoding/json matches keys case-insensitively.
		for k := range all {
			if strings.EqualFold(k, name) {
				delete(all, k)
			}
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	return all, nil
}

// marshalWithUnknown marshals v, a struct, and appends the unknown
// members after its own, sorted by key; without any, the output is
// exactly json.Marshal(v).
func marshalWithUnknown(v any, unknown map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(unknown) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(unknown))
	for k := range unknown {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out bytes.Buffer
	out.Write(b[:len(b)-1]) // without the closing brace
	for _, k := range keys {
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		out.Write(kb)
		out.WriteByte(':')
		out.Write(unknown[k])
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}
