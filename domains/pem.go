package domains

import (
	"bytes"
	"encoding/pem"
	"fmt"
)

// PEM block types of enrollment files.
const (
	PEMCertificate    = "HIERSIP CERTIFICATE"
	PEMRevocationList = "HIERSIP REVOCATION LIST"
)

// EncodePEM wraps a sealed certificate or revocation list in a PEM block of
// the given type, the form "hiersip authority" writes to files.
func EncodePEM(blockType string, data []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: data})
}

// DecodePEM returns the sealed bytes of data: the contents of its first PEM
// block, which must be of blockType, or data itself when it is not PEM.
func DecodePEM(data []byte, blockType string) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return data, nil
	}
	b, _ := pem.Decode(trimmed)
	if b == nil {
		return nil, fmt.Errorf("%w: malformed PEM", ErrBadRecord)
	}
	if b.Type != blockType {
		return nil, fmt.Errorf("%w: PEM block %q, want %q", ErrBadRecord, b.Type, blockType)
	}
	return b.Bytes, nil
}
