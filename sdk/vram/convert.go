package vram

import (
	"fmt"
	"time"

	vramv1 "github.com/vramward/vramward/sdk/proto/vram/v1"
)

func deviceToProto(d Device) *vramv1.Device {
	return &vramv1.Device{Index: d.Index, Name: d.Name, Uuid: d.UUID, TotalBytes: d.TotalBytes, FreeBytes: d.FreeBytes, Backend: d.Backend}
}

func deviceFromProto(p *vramv1.Device) Device {
	return Device{Index: p.GetIndex(), Name: p.GetName(), UUID: p.GetUuid(), TotalBytes: p.GetTotalBytes(), FreeBytes: p.GetFreeBytes(), Backend: p.GetBackend()}
}

func shardToProto(s *SealedShard) *vramv1.SealedShard {
	return &vramv1.SealedShard{
		ShardId: s.ShardID, Device: s.Device, DeviceUuid: s.DeviceUUID, Backend: s.Backend, Bytes: s.Bytes,
		Digest: s.Digest[:], LeafBytes: s.LeafBytes, FileSha256: s.FileSHA256[:],
		SealedAtUnixNano: s.SealedAt.UnixNano(), Signature: s.Signature[:],
	}
}

// shardFromProto refuses a shard whose fixed-size fields are not.
func shardFromProto(p *vramv1.SealedShard) (*SealedShard, error) {
	if p == nil {
		return nil, fmt.Errorf("no shard")
	}
	s := &SealedShard{ShardID: p.GetShardId(), Device: p.GetDevice(), DeviceUUID: p.GetDeviceUuid(), Backend: p.GetBackend(),
		Bytes: p.GetBytes(), LeafBytes: p.GetLeafBytes(), SealedAt: time.Unix(0, p.GetSealedAtUnixNano()).UTC()}
	for _, f := range []struct {
		name string
		src  []byte
		dst  *[32]byte
	}{{"digest", p.GetDigest(), &s.Digest}, {"file_sha256", p.GetFileSha256(), &s.FileSHA256}, {"signature", p.GetSignature(), &s.Signature}} {
		if len(f.src) != 32 {
			return nil, fmt.Errorf("shard %s: %s is %d bytes, want 32", s.ShardID, f.name, len(f.src))
		}
		copy(f.dst[:], f.src)
	}
	return s, nil
}
