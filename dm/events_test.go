package dm

import (
	"errors"
	"testing"
)

func TestWatchEventsNeedsArmPoll(t *testing.T) {
	c := &Client{version: Version{4, 35, 0}}
	_, err := c.WatchEvents()
	var ue *UnsupportedFeatureError
	if !errors.Is(err, ErrNotSupported) || !errors.As(err, &ue) || ue.Name != "DM_DEV_ARM_POLL" {
		t.Fatalf("WatchEvents on 4.35 = %v, want ErrNotSupported for DM_DEV_ARM_POLL", err)
	}
}
