package sys

// SetBufferStart lets kernel tests force DM_BUFFER_FULL_FLAG retries.
func (c *Control) SetBufferStart(n int) { c.bufStart = n }
