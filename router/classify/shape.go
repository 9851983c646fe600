package classify

// ShapeKey hashes the literal-free form of sql (see Normalize) without
// building it: equal for texts that differ only in literals, whitespace and
// comments. Keys are comparable only between calls on one Classifier.
func (c *Classifier) ShapeKey(sql string) uint64 {
	key, _, _, _ := keyOf(c.seed, sql)
	return key
}
