package transport

import (
	"bufio"
	"bytes"
	"testing"
)

func frameReader(b []byte) *relpConn {
	return &relpConn{r: bufio.NewReader(bytes.NewReader(b))}
}

func TestReadFrame(t *testing.T) {
	for in, want := range map[string]struct {
		txnr int
		cmd  string
		data string
		ok   bool
	}{
		"1 rsp 6 200 OK\n":              {1, "rsp", "200 OK", true},
		"0 serverclose 0\n":             {0, "serverclose", "", true},
		"7 rsp 17 200 OK\nrelp_ver=0\n": {7, "rsp", "200 OK\nrelp_ver=0", true},
		"1 rsp 6 200 OK":                {ok: false}, // no trailer
		"1 rsp 99999999 x\n":            {ok: false}, // over the frame cap
		"x rsp 0\n":                     {ok: false},
		"1 rsp\n":                       {ok: false},
		"1 rsp 0 \n":                    {ok: false},
		"123456789012345678901234567890123 r 0\n": {ok: false},
	} {
		txnr, cmd, data, err := frameReader([]byte(in)).readFrame()
		if (err == nil) != want.ok {
			t.Errorf("%q: err %v", in, err)
			continue
		}
		if want.ok && (txnr != want.txnr || cmd != want.cmd || string(data) != want.data) {
			t.Errorf("%q: %d %q %q", in, txnr, cmd, data)
		}
	}
}

// FuzzReadFrame: a receiver's bytes are untrusted; the reader answers a
// frame or an error, never panics, never allocates past the frame cap.
func FuzzReadFrame(f *testing.F) {
	for _, s := range []string{"1 rsp 6 200 OK\n", "0 serverclose 0\n", "2 rsp 3 500\n", "1 rsp 100 x\n", "\n\n", "1 1 1 1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := frameReader(b)
		for i := 0; i < 4; i++ {
			_, _, data, err := r.readFrame()
			if err != nil {
				return
			}
			if len(data) > maxRelpFrame {
				t.Fatalf("%d bytes of data", len(data))
			}
		}
	})
}
