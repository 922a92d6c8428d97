package audit

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"

	"github.com/vramward/vramward/sdk/audit"
)

// A spool's frames: "<crc32c in hex> <record line>\n". A frame that fails
// its check is skipped and counted; one without its newline is a torn
// tail, cut off at open.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameHead is the checksum and the space before a record's line.
const frameHead = 9

func appendFrame(buf, line []byte) []byte {
	buf = fmt.Appendf(buf, "%08x ", crc32.Checksum(line, castagnoli))
	buf = append(buf, line...)
	return append(buf, '\n')
}

// errTornFrame is a frame without its newline: the file ends inside it.
var errTornFrame = errors.New("torn record (no newline)")

// frameLine checks one frame (newline included) and returns its record's
// line, a part of frame.
func frameLine(frame []byte) ([]byte, error) {
	if len(frame) == 0 || frame[len(frame)-1] != '\n' {
		return nil, errTornFrame
	}
	body := frame[:len(frame)-1]
	if len(body) > 0 && body[0] == '{' {
		return body, nil // an unframed line of an earlier version
	}
	if len(body) < frameHead || body[frameHead-1] != ' ' {
		return nil, errors.New("not a framed record")
	}
	want, err := strconv.ParseUint(string(body[:frameHead-1]), 16, 32)
	if err != nil {
		return nil, errors.New("not a framed record")
	}
	line := body[frameHead:]
	if got := crc32.Checksum(line, castagnoli); got != uint32(want) {
		return nil, fmt.Errorf("record fails its checksum (%08x, the frame says %08x)", got, want)
	}
	return line, nil
}

// parseSpooled reads a spooled frame (its own allocation, newline
// included) back into the record it holds: the line is sent as it is, so
// it must be the canonical record the host made.
func parseSpooled(frame []byte) (audit.Record, error) {
	line, err := frameLine(frame)
	if err != nil {
		return audit.Record{}, err
	}
	e, err := audit.ParseCanonical(line)
	if err != nil {
		return audit.Record{}, err
	}
	return audit.Record{Event: e, Line: line}, nil
}

// nextRecord reads the next whole record from br, skipping damaged frames
// (counted when the spool was opened). It returns the bytes it read, and
// io.EOF at the end.
func nextRecord(br *bufio.Reader) (audit.Record, int, error) {
	read := 0
	for {
		frame, err := br.ReadBytes('\n')
		read += len(frame)
		if err != nil {
			if err == io.EOF && len(frame) > 0 {
				continue // a torn frame at the end: not a record
			}
			return audit.Record{}, read, err
		}
		if r, perr := parseSpooled(frame); perr == nil {
			return r, read, nil
		}
	}
}
