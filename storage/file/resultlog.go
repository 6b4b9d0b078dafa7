package file

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
)

// The command reports of an enrollment (final and NotNow) are appended to
// one file, resultLogFile in its directory, instead of a file each: on
// ext4 creating a file costs more than the rest of a command-loop request.
// Each record is
//
//	magic "NMRL" | body length (uint32, big endian) | CRC-32C of the body (uint32) | body
//
// and the body is
//
//	kind ('F' final, 'N' NotNow) | CommandUUID length (1 byte) | CommandUUID | raw report
//
// A record is appended with one write (two for a large report, see
// copyRecordUpTo), so a killed process leaves whole records, or a torn one
// at the end, as a crash of the machine may. The
// scanner skips a record whose length or checksum does not hold and looks
// for the next magic, so a torn tail (and a damaged record in the middle)
// is ignored and the records after it are kept, including those appended
// after a torn tail.
//
// The log only serves reads (the inspection API): whether a command is
// done is marked in the queue file (see queue.go). Past logCompactAt bytes
// the log is rewritten, atomically, with only its newest records, about
// logKeep bytes of them.
const (
	resultLogFile = "results.log"

	recordMagic  = "NMRL"
	recordHeader = len(recordMagic) + 4 + 4

	kindFinal  = 'F'
	kindNotNow = 'N'

	defaultLogCompactAt = 1 << 20
	defaultLogKeep      = 512 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// resultRecord is one report in a result log.
type resultRecord struct {
	kind byte
	uuid string
	raw  []byte
	// off and end delimit the whole record in the log.
	off, end int
}

// appendRecord appends the encoding of one record to b.
func appendRecord(b []byte, kind byte, uuid string, raw []byte) []byte {
	return append(appendRecordHead(b, kind, uuid, raw), raw...)
}

// appendRecordHead appends the encoding of one record up to its raw
// report (which follows it) to b, so that a large report is written
// without being copied.
func appendRecordHead(b []byte, kind byte, uuid string, raw []byte) []byte {
	bodyLen := 2 + len(uuid) + len(raw)
	b = append(b, recordMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(bodyLen))
	crcAt := len(b)
	b = append(b, 0, 0, 0, 0)
	body := len(b)
	b = append(b, kind, byte(len(uuid)))
	b = append(b, uuid...)
	crc := crc32.Update(crc32.Checksum(b[body:], castagnoli), castagnoli, raw)
	binary.BigEndian.PutUint32(b[crcAt:], crc)
	return b
}

// scanRecords calls fn with each intact record of the log b, in order,
// until fn returns false. Damaged bytes are skipped (see resultLogFile).
// The raw report of a record is a slice of b.
func scanRecords(b []byte, fn func(resultRecord) bool) {
	off := 0
	for {
		i := bytes.Index(b[off:], []byte(recordMagic))
		if i < 0 {
			return
		}
		off += i
		rec, ok := parseRecord(b, off)
		if !ok {
			off++ // not a record here: look for the next magic
			continue
		}
		if !fn(rec) {
			return
		}
		off = rec.end
	}
}

// parseRecord decodes the record that starts with its magic at off.
func parseRecord(b []byte, off int) (resultRecord, bool) {
	if len(b)-off < recordHeader {
		return resultRecord{}, false
	}
	h := b[off+len(recordMagic):]
	n := binary.BigEndian.Uint32(h)
	if n < 2 || uint64(n) > uint64(len(b)-off-recordHeader) {
		return resultRecord{}, false
	}
	body := b[off+recordHeader : off+recordHeader+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return resultRecord{}, false
	}
	kind, uuidLen := body[0], int(body[1])
	if (kind != kindFinal && kind != kindNotNow) || uuidLen == 0 || 2+uuidLen > len(body) {
		return resultRecord{}, false
	}
	return resultRecord{
		kind: kind,
		uuid: string(body[2 : 2+uuidLen]),
		raw:  body[2+uuidLen:],
		off:  off,
		end:  off + recordHeader + int(n),
	}, true
}

// copyRecordUpTo is the size of a report up to which a record is built
// in one buffer and appended with one write; a larger report is written
// from where it is, after its record's head (a second write), so that
// storing it takes no memory beside the report itself.
const copyRecordUpTo = 64 << 10

// appendResult appends a report of command uuid to the result log of c
// and compacts the log when it has grown past the limit. The caller holds
// the device's lock.
func (s *Storage) appendResult(c channel, kind byte, uuid string, raw []byte) error {
	if len(uuid) == 0 || len(uuid) > 255 {
		return fmt.Errorf("command UUID of %d bytes", len(uuid))
	}
	headLen := recordHeader + 2 + len(uuid)
	size := int64(headLen + len(raw))
	var parts [][]byte
	if len(raw) <= copyRecordUpTo {
		parts = [][]byte{appendRecord(make([]byte, 0, size), kind, uuid, raw)}
	} else {
		parts = [][]byte{appendRecordHead(make([]byte, 0, headLen), kind, uuid, raw), raw}
	}
	path := c.path(resultLogFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && size >= s.logKeep && fi.Size()+size > s.logCompactAt {
		// Compacting would keep this record only: write the log anew
		// with it instead of appending and reading the log back.
		f.Close()
		return s.writeFile(path, parts...)
	}
	if err == nil {
		for _, part := range parts {
			if _, err = f.Write(part); err != nil {
				// A short write (disk full) must not leave half a
				// record that later records would be read through:
				// cut it off.
				f.Truncate(fi.Size())
				break
			}
		}
		if err == nil && s.sync {
			err = f.Sync()
		}
		if err == nil && s.sync && fi.Size() == 0 {
			err = s.syncDir(c.dir)
		}
		if err == nil && fi.Size()+size > s.logCompactAt {
			err = s.compactResults(c)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// compactResults rewrites the result log of c with its newest records,
// as many as fit in logKeep bytes and at least one. The caller holds the
// device's lock.
func (s *Storage) compactResults(c channel) error {
	path := c.path(resultLogFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("compacting result log: %w", err)
	}
	var recs []resultRecord
	scanRecords(b, func(r resultRecord) bool { recs = append(recs, r); return true })
	keep, size := len(recs), int64(0) // recs[keep:] are kept
	for keep > 0 {
		n := int64(recs[keep-1].end - recs[keep-1].off)
		if size+n > s.logKeep && keep < len(recs) {
			break
		}
		size += n
		keep--
	}
	out := make([]byte, 0, size)
	for _, r := range recs[keep:] {
		out = append(out, b[r.off:r.end]...)
	}
	if err := s.writeFile(path, out); err != nil {
		return fmt.Errorf("compacting result log: %w", err)
	}
	return nil
}

// readResult returns the latest final report of command uuid in the
// result log of c, or else its latest NotNow report; nil if there is none.
func readResult(c channel, uuid string) ([]byte, error) {
	b, err := os.ReadFile(c.path(resultLogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var final, notNow []byte
	scanRecords(b, func(r resultRecord) bool {
		if r.uuid == uuid {
			if r.kind == kindFinal {
				final = r.raw
			} else {
				notNow = r.raw
			}
		}
		return true
	})
	if final != nil {
		return final, nil
	}
	return notNow, nil
}
