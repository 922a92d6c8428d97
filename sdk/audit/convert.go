package audit

import (
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// Proto types are converted here and nowhere else.

func eventToProto(e *Event) *auditv1.Event {
	p := &auditv1.Event{
		Seq:       e.Seq,
		Id:        e.ID,
		Time:      timestamppb.New(e.Time),
		Type:      string(e.Type),
		Severity:  auditv1.Severity(e.Severity),
		ServiceId: e.ServiceID,
		Actor: &auditv1.Actor{
			WorkerId:      e.Actor.WorkerID,
			SourceIp:      e.Actor.SourceIP,
			CorrelationId: e.Actor.CorrelationID,
		},
		Fields: make([]*auditv1.Field, len(e.Fields)),
		Chain:  &auditv1.Chain{Epoch: e.Chain.Epoch, Prev: e.Chain.Prev, Mac: e.Chain.MAC},
	}
	for i, f := range e.Fields {
		v := &auditv1.Value{}
		switch f.Value.kind {
		case KindString:
			v.Kind = &auditv1.Value_Str{Str: f.Value.str}
		case KindInt:
			v.Kind = &auditv1.Value_Int{Int: int64(f.Value.num)}
		case KindUint:
			v.Kind = &auditv1.Value_Uint{Uint: f.Value.num}
		case KindBool:
			v.Kind = &auditv1.Value_Bool{Bool: f.Value.num != 0}
		}
		p.Fields[i] = &auditv1.Field{Key: f.Key, Value: v}
	}
	return p
}

// eventFromProto converts and validates an event received over RPC: the
// payload is untrusted, whoever sent it.
func eventFromProto(p *auditv1.Event) (Event, error) {
	if p == nil {
		return Event{}, fmt.Errorf("missing event")
	}
	if err := p.GetTime().CheckValid(); err != nil {
		return Event{}, fmt.Errorf("seq %d: time: %w", p.GetSeq(), err)
	}
	if len(p.GetFields()) > MaxFields {
		return Event{}, fmt.Errorf("seq %d: %d fields, at most %d", p.GetSeq(), len(p.GetFields()), MaxFields)
	}
	e := Event{
		Seq:       p.GetSeq(),
		ID:        p.GetId(),
		Time:      p.GetTime().AsTime(),
		Type:      Type(p.GetType()),
		Severity:  Severity(p.GetSeverity()),
		ServiceID: p.GetServiceId(),
		Actor: Actor{
			WorkerID:      p.GetActor().GetWorkerId(),
			SourceIP:      p.GetActor().GetSourceIp(),
			CorrelationID: p.GetActor().GetCorrelationId(),
		},
		Fields: make([]Field, len(p.GetFields())),
		Chain:  Chain{Epoch: p.GetChain().GetEpoch(), Prev: nilIfEmpty(p.GetChain().GetPrev()), MAC: nilIfEmpty(p.GetChain().GetMac())},
	}
	if p.GetSeverity() < auditv1.Severity(Info) || p.GetSeverity() > auditv1.Severity(Critical) {
		e.Severity = 0 // out of range; a plain conversion could wrap into a valid one
	}
	for i, f := range p.GetFields() {
		var v Value
		switch k := f.GetValue().GetKind().(type) {
		case *auditv1.Value_Str:
			v = Value{kind: KindString, str: k.Str}
		case *auditv1.Value_Int:
			v = Int("", k.Int).Value
		case *auditv1.Value_Uint:
			v = Uint("", k.Uint).Value
		case *auditv1.Value_Bool:
			v = Bool("", k.Bool).Value
		default:
			return Event{}, fmt.Errorf("seq %d: field %q has no value", e.Seq, Sanitize(f.GetKey()))
		}
		e.Fields[i] = Field{Key: f.GetKey(), Value: v}
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
