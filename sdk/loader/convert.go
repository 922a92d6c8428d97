package loader

import loaderv1 "github.com/vramward/vramward/sdk/proto/loader/v1"

func summaryToProto(s *Summary) *loaderv1.ModelSummary {
	p := &loaderv1.ModelSummary{
		Path: s.Path, Format: s.Format, FormatVersion: s.FormatVersion, FileBytes: s.FileBytes,
		Architecture: s.Architecture, Name: s.Name, FileType: s.FileType,
		TensorCount: s.TensorCount, ParameterCount: s.ParameterCount, TensorBytes: s.TensorBytes,
		ContextLength: s.ContextLength, KvCount: s.KVCount, Alignment: s.Alignment, DataOffset: s.DataOffset,
		ChatTemplatePresent: s.ChatTemplatePresent, ChatTemplateBytes: s.ChatTemplateBytes,
	}
	for _, t := range s.TensorTypes {
		p.TensorTypes = append(p.TensorTypes, &loaderv1.TypeCount{Type: t.Type, Count: t.Count})
	}
	p.Metadata = make([]*loaderv1.MetadataEntry, len(s.Metadata))
	for i, m := range s.Metadata {
		p.Metadata[i] = &loaderv1.MetadataEntry{Key: m.Key, Type: m.Type, Value: m.Value, Length: m.Length}
	}
	return p
}

func summaryFromProto(p *loaderv1.ModelSummary) Summary {
	s := Summary{
		Path: p.GetPath(), Format: p.GetFormat(), FormatVersion: p.GetFormatVersion(), FileBytes: p.GetFileBytes(),
		Architecture: p.Architecture, Name: p.GetName(), FileType: p.GetFileType(),
		TensorCount: p.GetTensorCount(), ParameterCount: p.GetParameterCount(), TensorBytes: p.GetTensorBytes(),
		ContextLength: p.GetContextLength(), KVCount: p.GetKvCount(), Alignment: p.GetAlignment(), DataOffset: p.GetDataOffset(),
		ChatTemplatePresent: p.GetChatTemplatePresent(), ChatTemplateBytes: p.GetChatTemplateBytes(),
	}
	for _, t := range p.GetTensorTypes() {
		s.TensorTypes = append(s.TensorTypes, TypeCount{Type: t.GetType(), Count: t.GetCount()})
	}
	s.Metadata = make([]Metadata, len(p.GetMetadata()))
	for i, m := range p.GetMetadata() {
		s.Metadata[i] = Metadata{Key: m.GetKey(), Type: m.GetType(), Value: m.GetValue(), Length: m.GetLength()}
	}
	return s
}
