package audit

import (
	"fmt"

	"time"

	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// Proto types are converted here and nowhere else.

func eventToProto(e *Event) *auditv1.Event {
	p := &auditv1.Event{
		Seq:          e.Seq,
		Id:           e.ID,
		TimeUnixNano: e.Time.UnixNano(),
		Type:         string(e.Type),
		Severity:     auditv1.Severity(e.Severity),
		ServiceId:    e.ServiceID,
		Actor: &auditv1.Actor{
			WorkerId:      e.Actor.WorkerID,
			SourceIp:      e.Actor.SourceIP,
			CorrelationId: e.Actor.CorrelationID,
		},
		Fields: make([]*auditv1.Field, len(e.Fields)),
		Chain:  &auditv1.Chain{Epoch: e.Chain.Epoch, Prev: e.Chain.Prev, Hash: e.Chain.Hash},
	}
	for i, f := range e.Fields {
		pf := &auditv1.Field{Key: f.Key, Kind: auditv1.Kind(f.Value.kind)}
		switch f.Value.kind {
		case KindString:
			pf.Str = f.Value.str
		case KindInt:
			pf.Int = int64(f.Value.num)
		case KindUint:
			pf.Uint = f.Value.num
		case KindBool:
			pf.Bool = f.Value.num != 0
		}
		p.Fields[i] = pf
	}
	return p
}

// eventFromProto converts and validates an event received over RPC: the
// payload is untrusted, whoever sent it.
func eventFromProto(p *auditv1.Event) (Event, error) {
	var fields []Field
	return eventFromProtoInto(p, &fields)
}

// eventFromProtoInto is eventFromProto taking the fields' storage from the
// end of *fields, so a batch shares one backing array.
func eventFromProtoInto(p *auditv1.Event, fields *[]Field) (Event, error) {
	if p == nil {
		return Event{}, fmt.Errorf("missing event")
	}
	if len(p.GetFields()) > MaxFields {
		return Event{}, fmt.Errorf("seq %d: %d fields, at most %d", p.GetSeq(), len(p.GetFields()), MaxFields)
	}
	e := Event{
		Seq:       p.GetSeq(),
		ID:        p.GetId(),
		Time:      time.Unix(0, p.GetTimeUnixNano()).UTC(),
		Type:      Type(p.GetType()),
		Severity:  Severity(p.GetSeverity()),
		ServiceID: p.GetServiceId(),
		Actor: Actor{
			WorkerID:      p.GetActor().GetWorkerId(),
			SourceIP:      p.GetActor().GetSourceIp(),
			CorrelationID: p.GetActor().GetCorrelationId(),
		},
		Chain: Chain{Epoch: p.GetChain().GetEpoch(), Prev: nilIfEmpty(p.GetChain().GetPrev()), Hash: nilIfEmpty(p.GetChain().GetHash())},
	}
	if p.GetSeverity() < auditv1.Severity(Info) || p.GetSeverity() > auditv1.Severity(Critical) {
		e.Severity = 0 // out of range; a plain conversion could wrap into a valid one
	}
	start := len(*fields)
	*fields = append(*fields, make([]Field, len(p.GetFields()))...)
	e.Fields = (*fields)[start:len(*fields):len(*fields)]
	for i, f := range p.GetFields() {
		var v Value
		switch f.GetKind() {
		case auditv1.Kind_KIND_STRING:
			v = Value{kind: KindString, str: f.GetStr()}
			if f.GetInt() != 0 || f.GetUint() != 0 || f.GetBool() {
				return Event{}, fmt.Errorf("seq %d: field %q: a string field carries another value", e.Seq, Sanitize(f.GetKey()))
			}
		case auditv1.Kind_KIND_INT:
			v = Value{kind: KindInt, num: uint64(f.GetInt())}
		case auditv1.Kind_KIND_UINT:
			v = Value{kind: KindUint, num: f.GetUint()}
		case auditv1.Kind_KIND_BOOL:
			v = Bool("", f.GetBool()).Value
		default:
			return Event{}, fmt.Errorf("seq %d: field %q has no valid kind", e.Seq, Sanitize(f.GetKey()))
		}
		if f.GetKind() != auditv1.Kind_KIND_STRING && f.GetStr() != "" {
			return Event{}, fmt.Errorf("seq %d: field %q: a %s field carries a string", e.Seq, Sanitize(f.GetKey()), v.kind)
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
