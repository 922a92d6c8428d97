package syslogsink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audittest"
)

// relpReceiver is a RELP receiver that acknowledges the first k syslog
// messages of its first session and then closes it: a receiver that went
// away in the middle of a batch. Later sessions acknowledge everything.
// It records the messages it acknowledged.
type relpReceiver struct {
	ln  net.Listener
	got chan string
}

func startRELP(t *testing.T, k int) *relpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relpReceiver{ln: ln, got: make(chan string, 10000)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		limit := k
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.serve(c, limit)
			limit = -1
		}
	}()
	return r
}

func (r *relpReceiver) serve(c net.Conn, limit int) {
	defer c.Close()
	br := bufio.NewReader(c)
	acked := 0
	for {
		txnr, err := br.ReadString(' ')
		if err != nil {
			return
		}
		cmd, _ := br.ReadString(' ')
		lenField, _ := br.ReadString('\n')
		n, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(lenField, " ", 2)[0]))
		data := ""
		if n > 0 {
			data = strings.SplitN(lenField, " ", 2)[1]
			for len(data) < n+1 { // the data may hold newlines
				more, err := br.ReadString('\n')
				if err != nil {
					return
				}
				data += more
			}
			data = data[:n]
		}
		txnr, cmd = strings.TrimSpace(txnr), strings.TrimSpace(cmd)
		if cmd == "syslog" {
			if acked == limit {
				fmt.Fprint(c, "0 serverclose 0\n")
				return
			}
			acked++
			r.got <- data
		}
		fmt.Fprintf(c, "%s rsp 6 200 OK\n", txnr)
	}
}

func (r *relpReceiver) seqs(t *testing.T) []uint64 {
	t.Helper()
	var out []uint64
	for {
		select {
		case m := <-r.got:
			_, rec, ok := strings.Cut(m, "] \xef\xbb\xbf")
			if !ok {
				t.Fatalf("not a record: %q", m)
			}
			e, err := audit.ParseJSON([]byte(rec))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e.Seq)
		default:
			return out
		}
	}
}

// TestReceiverGoneMidBatchIsAPartialWrite: the receiver acknowledges 7 of
// a batch of 20 and goes away. Write must say that those 7 were delivered
// (PartialWriteError), so the host keeps only the other 13; a new sink
// process (after a host restart) given just those sends each exactly once.
func TestReceiverGoneMidBatchIsAPartialWrite(t *testing.T) {
	recv := startRELP(t, 7)
	cfg, _ := json.Marshal(map[string]any{"transport": "relp", "address": recv.ln.Addr().String(), "hostname": "n1"})
	events := audittest.Events(20)
	s := configured(t, cfg)
	err := s.Write(context.Background(), audittest.Records(events))
	var pe *audit.PartialWriteError
	if !errors.As(err, &pe) || pe.Written != 7 {
		t.Fatalf("Write after 7 of 20 acknowledged returned %v", err)
	}
	// The host re-sends the rest through a new sink process.
	s2 := configured(t, cfg)
	if err := s2.Write(context.Background(), audittest.Records(events[pe.Written:])); err != nil {
		t.Fatal(err)
	}
	got := recv.seqs(t)
	if len(got) != 20 {
		t.Fatalf("the receiver got %d records: %v", len(got), got)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d: %v", i, seq, got)
		}
	}
}
