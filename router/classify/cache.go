package classify

import "sync"

// The cache maps a 64-bit key to a Result. A key is the seeded maphash of the
// literal-free form (or, for the rare literal-sensitive text, of the exact
// text); beside it an entry keeps the form's length as a cheap second check.
// The normalized bytes themselves are not kept: with a per-process random seed,
// two forms collide with odds of about n²/2⁶⁵, an outsider cannot aim for a
// collision, and even one that happened would at worst send a write to a
// replica, which refuses it with 25006 and is retried on the primary.
//
// It is bounded: at most CacheSize entries, split over shards each with its own
// mutex (sessions classify concurrently), evicted by CLOCK (second chance): a
// hit only sets a bit, so the hit path writes no list pointers and allocates
// nothing.

// CacheStats counts cache use since New.
type CacheStats struct {
	Hits, Misses, Entries, Evictions uint64
}

type entry struct {
	key        uint64
	length     uint32
	ref        bool // CLOCK's second-chance bit, set by hits
	remembered bool // put by Remember: survives SetVolatile
	exact      bool // a marker: look this text up again by its exact key
	res        Result
}

type shard struct {
	mu        sync.Mutex
	index     map[uint64]int32 // key → position in slots
	slots     []entry
	limit     int
	hand      int
	hits      uint64
	misses    uint64
	evictions uint64
}

type cache struct {
	shards []shard
	mask   uint64
}

func newCache(size int) *cache {
	n := 16
	for n > 1 && n > size {
		n /= 2
	}
	c := &cache{shards: make([]shard, n), mask: uint64(n - 1)}
	for i := range c.shards {
		limit := size / n
		c.shards[i].limit = limit
		c.shards[i].index = make(map[uint64]int32, limit)
		c.shards[i].slots = make([]entry, 0, limit)
	}
	return c
}

func (c *cache) shard(key uint64) *shard {
	// The low bits pick the map bucket; the high bits pick the shard.
	return &c.shards[(key>>58)&c.mask]
}

// lookup returns the entry for key, or ok false (counted as a miss).
func (s *shard) lookup(key uint64, length uint32) (res Result, exact, ok bool) {
	s.mu.Lock()
	if i, found := s.index[key]; found && s.slots[i].length == length {
		e := &s.slots[i]
		e.ref = true
		res, exact = e.res, e.exact
		if !exact {
			s.hits++
		}
		s.mu.Unlock()
		return res, exact, true
	}
	s.misses++
	s.mu.Unlock()
	return Result{}, false, false
}

// isExact reports whether key holds an exact-text marker, without counting.
func (s *shard) isExact(key uint64, length uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := s.index[key]
	return found && s.slots[i].length == length && s.slots[i].exact
}

// put stores e unless valid() says the result is stale (checked under the
// lock, see Classifier.SetVolatile).
func (s *shard) put(e entry, valid func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if valid != nil && !valid() {
		return
	}
	if s.limit <= 0 {
		return
	}
	if i, found := s.index[e.key]; found {
		if s.slots[i].remembered && !e.remembered {
			return // a correction made by the router wins over a fresh parse
		}
		s.slots[i] = e
		return
	}
	if len(s.slots) < s.limit {
		s.index[e.key] = int32(len(s.slots))
		s.slots = append(s.slots, e)
		return
	}
	// CLOCK: clear second chances until an unreferenced slot comes round.
	for s.slots[s.hand].ref {
		s.slots[s.hand].ref = false
		s.hand = (s.hand + 1) % len(s.slots)
	}
	delete(s.index, s.slots[s.hand].key)
	s.slots[s.hand] = e
	s.index[e.key] = int32(s.hand)
	s.hand = (s.hand + 1) % len(s.slots)
	s.evictions++
}

// dropParsed forgets every entry that came from a parse, keeping the ones
// Remember put.
func (s *shard) dropParsed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.slots[:0]
	for _, e := range s.slots {
		if e.remembered {
			kept = append(kept, e)
		}
	}
	clear(s.slots[len(kept):])
	s.slots = kept
	clear(s.index)
	for i, e := range s.slots {
		s.index[e.key] = int32(i)
	}
	s.hand = 0
}

func (c *cache) stats() CacheStats {
	var st CacheStats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Hits += s.hits
		st.Misses += s.misses
		st.Evictions += s.evictions
		st.Entries += uint64(len(s.slots))
		s.mu.Unlock()
	}
	return st
}
