package sanitize

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "shard-01/model.gguf", "shard-01/model.gguf"},
		{"empty", "", ""},
		{"newline cannot forge a line", "ok\n{\"seq\":9}", `ok\x0a{"seq":9}`},
		{"carriage return and tab", "a\rb\tc", `a\x0db\x09c`},
		{"NUL and DEL", "a\x00b\x7fc", `a\x00b\x7fc`},
		{"ANSI colour is inert", "\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"C1 CSI", "a\u009b31mb", `a\u009b31mb`},
		{"right-to-left override", "evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"isolates and marks", "\u2066\u2067\u2068\u2069\u200e\u200f\u061c", `\u2066\u2067\u2068\u2069\u200e\u200f\u061c`},
		{"line separators", "a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"invalid UTF-8", "a\xff\xfeb", "a\uFFFD\uFFFDb"},
		{"backslash is escaped so escapes are unambiguous", `C:\x1b`, `C:\\x1b`},
		{"non-ASCII kept", "modèle-日本語", "modèle-日本語"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := String(tc.in); got != tc.want {
				t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSanitizeCaps(t *testing.T) {
	exact := strings.Repeat("a", MaxStringBytes)
	if got := String(exact); got != exact {
		t.Errorf("a string of exactly MaxStringBytes was changed (len %d)", len(got))
	}
	long := strings.Repeat("a", MaxStringBytes+100)
	got := String(long)
	if len(got) > MaxStringBytes {
		t.Fatalf("len %d > cap %d", len(got), MaxStringBytes)
	}
	kept := strings.Index(got, "…")
	wantMarker := "…[truncated " + strconv.Itoa(len(long)-kept) + " bytes]"
	if !strings.HasSuffix(got, wantMarker) {
		t.Errorf("marker: got suffix %q, want %q", got[kept:], wantMarker)
	}
	// Escapes expand; the cut must fall between escapes, never inside one.
	hostile := strings.Repeat("\x1b", MaxStringBytes)
	got = String(hostile)
	body := got[:strings.Index(got, "…")]
	if len(body)%4 != 0 || strings.Count(body, `\x1b`) != len(body)/4 {
		t.Errorf("cut inside an escape: tail %q", body[len(body)-6:])
	}
	// Multi-byte runes are never split.
	wide := strings.Repeat("日", MaxStringBytes)
	if got := String(wide); !utf8.ValidString(got) || len(got) > MaxStringBytes {
		t.Errorf("wide: valid=%v len=%d", utf8.ValidString(got), len(got))
	}
}

// FuzzString: whatever goes in, what comes out is valid UTF-8, within the
// cap, and free of every character String promises to escape.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[2J", "a\u202eb", "\xff", strings.Repeat("\\", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := String(in)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q", in)
		}
		if len(out) > MaxStringBytes {
			t.Fatalf("len %d over the cap", len(out))
		}
		for _, r := range out {
			if r < 0x20 || (r >= 0x7f && r <= 0x9f) || isBidiOrSeparator(r) {
				t.Fatalf("raw %U left in %q", r, out)
			}
		}
		if String(in) != out {
			t.Fatal("not deterministic")
		}
	})
}

func BenchmarkSanitizeHostile(b *testing.B) {
	s := "model\x1b[31m/\u202eevil\npath/" + time.Now().String()
	for i := 0; i < b.N; i++ {
		_ = String(s)
	}
}
