package presence

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Limits of the XML documents this package reads.
const (
	MaxDocument = 16 << 10 // bytes of a PIDF or reginfo body
	maxDepth    = 16       // element nesting
	maxElements = 1024     // elements in one document
)

// ErrBadDocument: a body that is not a valid document of its type.
var ErrBadDocument = errors.New("presence: invalid document")

// Node is an XML element this package does not interpret (an extension:
// RPID activities, a data-model person, a location): kept as a tree with
// its namespaces resolved, and written back as such.
type Node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []Node     `xml:",any"`
}

// clean drops namespace declarations from the attributes (encoding/xml
// writes its own) and trims the tree.
func (n *Node) clean() {
	attrs := n.Attrs[:0]
	for _, a := range n.Attrs {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		attrs = append(attrs, a)
	}
	n.Attrs = attrs
	if len(n.Nodes) > 0 {
		n.Text = string(bytes.TrimSpace([]byte(n.Text)))
	}
	for i := range n.Nodes {
		n.Nodes[i].clean()
	}
}

// screen checks a document's size and shape before it is decoded: at most
// MaxDocument bytes, maxDepth levels, maxElements elements, no DTD.
func screen(doc []byte) error {
	if len(doc) > MaxDocument {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadDocument, len(doc), MaxDocument)
	}
	d := xml.NewDecoder(bytes.NewReader(doc))
	depth, n := 0, 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadDocument, err)
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
			n++
			if depth > maxDepth || n > maxElements {
				return fmt.Errorf("%w: too deep or too many elements", ErrBadDocument)
			}
		case xml.EndElement:
			depth--
		case xml.Directive:
			return fmt.Errorf("%w: a DTD or directive", ErrBadDocument)
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: no element", ErrBadDocument)
	}
	return nil
}

// marshal writes v as an XML document with its declaration.
func marshal(v any) ([]byte, error) {
	out, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}
