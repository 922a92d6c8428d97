package syslogsink

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/plugins/audit-syslog/internal/transport"
	"github.com/vramward/vramward/sdk/audittest"
)

// TestStalledTCPReceiverFailsTheWrite: a receiver that accepts the
// connection and never reads, with a small receive buffer: the messages fit
// in this node's send buffer, so writing them succeeds, but the receiver's
// stack never acknowledges them. The Write fails (the host keeps the
// events and counts the failure) instead of succeeding with the records in
// the kernel alone, and the messages stay held for a new connection.
// Before, the Write returned nil.
func TestStalledTCPReceiverFailsTheWrite(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // held open, never read
		}
		close(accepted)
	}()
	t.Cleanup(func() {
		ln.Close()
		if c, ok := <-accepted; ok {
			c.Close()
		}
	})
	cfg, _ := json.Marshal(map[string]any{"hostname": "gpu-node-1", "transport": "tcp", "address": ln.Addr().String(),
		"timeout": "300ms", "max_message_bytes": 1 << 20, "buffer_bytes": 1 << 24})
	s := configured(t, cfg)
	err = s.Write(context.Background(), audittest.Records(audittest.Events(400)))
	if !errors.Is(err, transport.ErrNotAcked) {
		t.Fatalf("a write to a receiver that acknowledges nothing returned %v", err)
	}
	if len(s.pend) != 400 {
		t.Fatalf("%d of the 400 messages still held for a new connection", len(s.pend))
	}
	start := time.Now()
	if err := s.Flush(context.Background()); err == nil {
		t.Fatal("a flush with every message unacknowledged returned nil")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the flush took %s", d)
	}
}
