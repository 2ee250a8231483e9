// Package impure breaks each purity rule once; the architecture test
// checks that its purity check names every break.
package impure

import (
	"net/http"
	"os"
	clock "time"
)

func Decide() bool {
	go func() {}()
	start := clock.Now()
	_ = os.Getenv("X")
	_ = http.MethodGet
	return clock.Since(start) > 0
}
