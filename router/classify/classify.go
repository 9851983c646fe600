package classify

import (
	"fmt"
	"hash/maphash"
	"sync/atomic"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// DefaultCacheSize is the number of cached classifications when
// Options.CacheSize is 0.
const DefaultCacheSize = 10000

// Options configure a Classifier.
type Options struct {
	// WriteFunctions are the user's functions with side effects (the
	// configuration's write_functions); matched like the built-in write list:
	// case-insensitively, on the last name component.
	WriteFunctions []string
	// CacheSize bounds the cache: 0 means DefaultCacheSize, a negative value
	// turns the cache off (every call parses).
	CacheSize int
}

// Classifier classifies query texts. It is safe for concurrent use.
type Classifier struct {
	seed     maphash.Seed
	user     map[string]struct{}
	volatile atomic.Pointer[map[string]struct{}]
	gen      atomic.Uint64 // bumped by SetVolatile: results parsed before it are stale
	// epoch is bumped by SetVolatile and Remember: a Memo filled before it
	// may hold a result the cache no longer gives.
	epoch atomic.Uint64
	cache *cache // nil when turned off
}

// New returns a Classifier.
func New(opts Options) *Classifier {
	c := &Classifier{seed: maphash.MakeSeed(), user: nameSet(opts.WriteFunctions)}
	empty := map[string]struct{}{}
	c.volatile.Store(&empty)
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	if size > 0 {
		c.cache = newCache(size)
	}
	return c
}

// Results for text with no statement, made once so that they cost nothing.
var emptyResults = [...]Result{
	HintNone:    {Route: Read, Kind: KindEmpty, Reason: reasonEmpty},
	HintPrimary: {Route: Write, Kind: KindEmpty, Reason: reasonHintPri, Hint: HintPrimary},
	HintReplica: {Route: Read, Kind: KindEmpty, Reason: reasonHintRep, Hint: HintReplica},
}

// Classify returns where sql may run. It never fails: text pg_query cannot
// parse is a write, and the server will report the syntax error. A cache hit
// allocates nothing.
func (c *Classifier) Classify(sql string) Result {
	key, length, hint, empty := keyOf(c.seed, sql)
	res, _ := c.classify(sql, key, length, hint, empty)
	res.Shape = key
	return res
}

// Memo is one caller's last classification by shape. A session mostly runs
// one statement after another with other literals: from its Memo it skips
// the shared cache, its lock and its counters. The zero Memo is empty.
type Memo struct {
	c      *Classifier
	epoch  uint64
	key    uint64
	length uint32
	res    Result
}

// ClassifyMemo is Classify, answered from m when sql has the shape m holds
// (and nothing changed results since m was filled), and keeping sql's
// result in m otherwise. A text whose route depends on its literals is
// never answered from m.
func (c *Classifier) ClassifyMemo(m *Memo, sql string) Result {
	key, length, hint, empty := keyOf(c.seed, sql)
	if m.c == c && m.key == key && m.length == length && !empty && m.epoch == c.epoch.Load() {
		res := m.res
		res.Shape = key
		return res
	}
	epoch := c.epoch.Load() // before classifying: a change meanwhile empties m
	res, byShape := c.classify(sql, key, length, hint, empty)
	if byShape {
		*m = Memo{c: c, epoch: epoch, key: key, length: length, res: res}
	}
	res.Shape = key
	return res
}

// classify returns sql's result; byShape reports that every text of its
// shape has it (a cache entry by the literal-free form).
func (c *Classifier) classify(sql string, key uint64, length uint32, hint HintKind, empty bool) (_ Result, byShape bool) {
	if empty {
		return emptyResults[hint], false
	}
	if c.cache == nil {
		return decide(sql, hint, c.sets()).Result, false
	}
	sh := c.cache.shard(key)
	res, exact, ok := sh.lookup(key, length)
	if ok && !exact {
		return res, true
	}
	if exact {
		return c.classifyExact(sql, hint), false
	}
	gen := c.gen.Load()
	v := decide(sql, hint, c.sets())
	if v.exact {
		sh.put(entry{key: key, length: length, exact: true}, c.current(gen))
		c.putExact(sql, v.Result, false, c.current(gen))
		return v.Result, false
	}
	sh.put(entry{key: key, length: length, res: v.Result}, c.current(gen))
	return v.Result, true
}

// classifyExact serves texts whose route depends on a literal's value: they
// are cached by their exact text.
func (c *Classifier) classifyExact(sql string, hint HintKind) Result {
	key := c.exactKey(sql)
	if res, _, ok := c.cache.shard(key).lookup(key, uint32(len(sql))); ok {
		return res
	}
	gen := c.gen.Load()
	v := decide(sql, hint, c.sets())
	c.putExact(sql, v.Result, false, c.current(gen))
	return v.Result
}

func (c *Classifier) exactKey(sql string) uint64 {
	// The 0xff suffix keeps exact keys apart from normalized ones, whose last
	// byte is a HintKind.
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(sql)
	h.WriteByte(0xff)
	return h.Sum64()
}

// putExact stores r under sql's exact key; valid as for shard.put.
func (c *Classifier) putExact(sql string, r Result, remembered bool, valid func() bool) {
	key := c.exactKey(sql)
	c.cache.shard(key).put(entry{key: key, length: uint32(len(sql)), res: r, remembered: remembered}, valid)
}

// current returns a check that no SetVolatile happened since gen was read.
func (c *Classifier) current(gen uint64) func() bool {
	return func() bool { return c.gen.Load() == gen }
}

func (c *Classifier) sets() funcSets {
	return funcSets{user: c.user, volatile: *c.volatile.Load()}
}

// Remember records r as the result for sql and every text of the same shape
// (the same literal-free form), overriding what parsing said: the router calls
// it when a replica refused a "read" with 25006. It lasts until the entry is
// evicted; SetVolatile does not drop it.
func (c *Classifier) Remember(sql string, r Result) {
	if c.cache == nil {
		return
	}
	defer c.epoch.Add(1) // after the entry changed: a Memo filled meanwhile must not outlive it
	key, length, _, empty := keyOf(c.seed, sql)
	if empty {
		return
	}
	sh := c.cache.shard(key)
	if sh.isExact(key, length) {
		c.putExact(sql, r, true, nil)
		return
	}
	sh.put(entry{key: key, length: length, res: r, remembered: true}, nil)
}

// SetVolatile replaces the set of user-defined volatile functions (loaded by
// the router from the primary's pg_proc): calls to them make a query a write.
// Cached results from parsing are dropped; Remember's are kept.
func (c *Classifier) SetVolatile(names []string) {
	set := nameSet(names)
	c.volatile.Store(&set)
	// Order matters: a miss that parsed with the old set checks gen under the
	// shard lock before it stores, and each shard is cleared after the bump.
	c.gen.Add(1)
	defer c.epoch.Add(1) // after the entries went, as in Remember
	if c.cache == nil {
		return
	}
	for i := range c.cache.shards {
		c.cache.shards[i].dropParsed()
	}
}

// Stats returns the cache's counters.
func (c *Classifier) Stats() CacheStats {
	if c.cache == nil {
		return CacheStats{}
	}
	return c.cache.stats()
}

// Split returns the statements of a multi-statement text, as PostgreSQL's
// parser splits them; nil when it cannot parse the text.
func Split(sql string) []string {
	stmts, err := pg_query.SplitWithParser(sql, true)
	if err != nil {
		return nil
	}
	return stmts
}

// Fingerprint returns pg_query's fingerprint of sql: equal for queries that
// differ only in literals, whitespace and comments.
func Fingerprint(sql string) (uint64, error) {
	fp, err := pg_query.FingerprintToUInt64(sql)
	if err != nil {
		return 0, fmt.Errorf("classify: fingerprint: %w", err)
	}
	return fp, nil
}
