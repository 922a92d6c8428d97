// Command lanewake measures what sdk/internal/lane's choice rests on: the
// round trip of a small frame between two idle Go processes over a Unix
// socket pair, with each end waiting either in the runtime's network poller
// (a net.Conn) or with its thread asleep in read(2) on a blocking
// descriptor. It prints the p50 and p90 of each combination and the ratio
// of each to the poller on both ends, measured in the same run.
//
//	go run ./bench/lanewake [-rounds 3000] [-gap 200us]
//
// The gap between requests lets every thread of both processes go idle, as
// they are between two CRITICAL emits.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

const frame = 64

func main() {
	rounds := flag.Int("rounds", 3000, "round trips per combination")
	gap := flag.Duration("gap", 200*time.Microsecond, "idle time between round trips")
	echo := flag.String("echo", "", "internal: run as the echoing child, waiting this way (poller or asleep)")
	flag.Parse()
	if *echo != "" {
		if err := serveEcho(*echo); err != nil {
			fmt.Fprintln(os.Stderr, "lanewake child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*rounds, *gap); err != nil {
		fmt.Fprintln(os.Stderr, "lanewake:", err)
		os.Exit(1)
	}
}

func run(rounds int, gap time.Duration) error {
	combos := [][2]string{{"poller", "poller"}, {"asleep", "asleep"}, {"poller", "asleep"}, {"asleep", "poller"}}
	fmt.Printf("%-10s %-10s %10s %10s %10s\n", "caller", "echo", "p50 µs", "p90 µs", "× poller")
	var base float64
	for _, c := range combos {
		p50, p90, err := measure(c[0], c[1], rounds, gap)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", c[0], c[1], err)
		}
		if base == 0 {
			base = p50
		}
		fmt.Printf("%-10s %-10s %10.1f %10.1f %10.2f\n", c[0], c[1], p50, p90, p50/base)
	}
	return nil
}

// measure starts the echoing child on one end of a fresh socket pair and
// times rounds round trips from this process's end, waiting the caller's way.
func measure(caller, echo string, rounds int, gap time.Duration) (p50, p90 float64, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	childEnd := os.NewFile(uintptr(fds[1]), "echo end")
	cmd := exec.Command(os.Args[0], "-echo", echo)
	cmd.ExtraFiles = []*os.File{childEnd}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		childEnd.Close()
		unix.Close(fds[0])
		return 0, 0, err
	}
	childEnd.Close()
	end, err := waitingEnd(fds[0], caller)
	if err != nil {
		// The child reads EOF once this end is closed, and exits.
		unix.Close(fds[0])
		return 0, 0, errors.Join(err, cmd.Wait())
	}
	defer func() {
		end.Close()
		if werr := cmd.Wait(); err == nil && werr != nil {
			err = fmt.Errorf("echo child: %w", werr)
		}
	}()

	buf := make([]byte, frame)
	took := make([]float64, 0, rounds)
	for i := 0; i < rounds+rounds/10; i++ {
		time.Sleep(gap)
		t0 := time.Now()
		if _, err := end.Write(buf); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(end, buf); err != nil {
			return 0, 0, err
		}
		if i >= rounds/10 { // the first tenth warms both processes up
			took = append(took, float64(time.Since(t0).Nanoseconds())/1e3)
		}
	}
	sort.Float64s(took)
	return took[len(took)/2], took[len(took)*9/10], nil
}

// waitingEnd wraps fd so that a read waits the given way: "poller" makes it
// a net.Conn parked in the runtime's poller; "asleep" keeps it a blocking
// descriptor, so the reading thread sleeps in read(2).
func waitingEnd(fd int, way string) (io.ReadWriteCloser, error) {
	switch way {
	case "asleep":
		if err := unix.SetNonblock(fd, false); err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), "lane"), nil
	case "poller":
		f := os.NewFile(uintptr(fd), "lane")
		defer f.Close() // FileConn holds its own copy
		return net.FileConn(f)
	}
	return nil, fmt.Errorf("waiting way %q: want poller or asleep", way)
}

func serveEcho(way string) error {
	end, err := waitingEnd(3, way)
	if err != nil {
		return err
	}
	defer end.Close()
	buf := make([]byte, frame)
	for {
		if _, err := io.ReadFull(end, buf); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if _, err := end.Write(buf); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
	}
}
