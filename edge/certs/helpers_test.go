package certs

import "time"

// testTimeZero asks testpki for its default validity.
var testTimeZero time.Time
