package pool

// Answers decides what becomes of a server's messages while a client is
// linked. The router supplies it (one per server connection, made at
// connect), so that pool forwards bytes and knows no SQL.
type Answers interface {
	// Answer is told each message from the server while a client is linked
	// and appends to out what the client gets for it. msg is the whole
	// message, header included, or nil for a DataRow or CopyData too large
	// to hold (Verdict.Stream then says whether to forward it).
	Answer(out []byte, typ byte, msg []byte) ([]byte, Verdict)
	// Lost is told that the connection was lost while linked.
	Lost()
	// Detached is told that the client left: an open transaction is rolled
	// back and, with reset, the session reset (pool.reset_query).
	Detached(reset bool)
}

// Verdict is what the pump does besides writing what Answer appended.
type Verdict struct {
	Stream bool // forward the message handed over as nil, as it arrives
	Keep   bool // after a ReadyForQuery: keep the client linked even at rest
}

// passAll forwards everything: a pool's connections answer this way when
// its Target names no Answers.
type passAll struct{}

func (passAll) Answer(out []byte, _ byte, msg []byte) ([]byte, Verdict) {
	if msg == nil {
		return out, Verdict{Stream: true}
	}
	return append(out, msg...), Verdict{}
}

func (passAll) Lost()         {}
func (passAll) Detached(bool) {}
