package sipbridge

import (
	"context"
	"log/slog"
	"slices"
)

// uniqueKeys is a slog.Handler that writes each key once: an attribute added
// again (sipgo's transport layer adds "caller" twice, once per layer) replaces
// the earlier one. It wraps the loggers the bridge hands to sipgo.
type uniqueKeys struct {
	h     slog.Handler // the handler before attrs
	attrs []slog.Attr
}

func uniqueKeysLogger(l *slog.Logger) *slog.Logger {
	return slog.New(&uniqueKeys{h: l.Handler()})
}

func (u *uniqueKeys) Enabled(ctx context.Context, l slog.Level) bool { return u.h.Enabled(ctx, l) }

func merge(dst []slog.Attr, add ...slog.Attr) []slog.Attr {
	for _, a := range add {
		if i := slices.IndexFunc(dst, func(b slog.Attr) bool { return b.Key == a.Key }); i >= 0 {
			dst[i] = a
			continue
		}
		dst = append(dst, a)
	}
	return dst
}

func (u *uniqueKeys) WithAttrs(as []slog.Attr) slog.Handler {
	return &uniqueKeys{h: u.h, attrs: merge(slices.Clone(u.attrs), as...)}
}

func (u *uniqueKeys) WithGroup(name string) slog.Handler {
	// Attributes before a group cannot repeat keys inside it: hand them down.
	return &uniqueKeys{h: u.h.WithAttrs(u.attrs).WithGroup(name)}
}

func (u *uniqueKeys) Handle(ctx context.Context, r slog.Record) error {
	as := slices.Clone(u.attrs)
	r.Attrs(func(a slog.Attr) bool { as = merge(as, a); return true })
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(as...)
	return u.h.Handle(ctx, out)
}
