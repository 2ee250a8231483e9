//go:build !linux

package audit

import "errors"

func makeShared(string) (func(), error) {
	return nil, errors.New("shared mount points need Linux")
}
