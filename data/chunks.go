package data

import (
	"clm/internal/mmapfile"
	"encoding/binary"
	"fmt"
	"os"
)

// Chunks is a read-only set of token chunks of equal length, backed by the
// memory-mapped shards of the token cache.
type Chunks struct {
	ctx    int
	width  int // bytes per token: 2 (uint16) or 4 (uint32)
	shards [][]byte
	starts []int // first chunk index of each shard
	n      int
	unmap  []func() error
}

// Len returns the number of chunks.
func (c *Chunks) Len() int { return c.n }

// ContextLength returns the number of tokens of each chunk.
func (c *Chunks) ContextLength() int { return c.ctx }

// Tokens returns the number of tokens of all chunks.
func (c *Chunks) Tokens() int64 { return int64(c.n) * int64(c.ctx) }

// Chunk appends chunk i to dst[:0] and returns it.
func (c *Chunks) Chunk(i int, dst []int32) []int32 {
	if i < 0 || i >= c.n {
		panic(fmt.Sprintf("data: chunk %d out of range [0, %d)", i, c.n))
	}
	s := len(c.starts) - 1
	for c.starts[s] > i {
		s--
	}
	b := c.shards[s][(i-c.starts[s])*c.ctx*c.width:]
	dst = dst[:0]
	if c.width == 2 {
		for k := 0; k < c.ctx; k++ {
			dst = append(dst, int32(binary.LittleEndian.Uint16(b[2*k:])))
		}
	} else {
		for k := 0; k < c.ctx; k++ {
			dst = append(dst, int32(binary.LittleEndian.Uint32(b[4*k:])))
		}
	}
	return dst
}

// Close unmaps the shards.
func (c *Chunks) Close() error {
	var first error
	for _, u := range c.unmap {
		if err := u(); err != nil && first == nil {
			first = err
		}
	}
	c.unmap, c.shards = nil, nil
	return first
}

// openChunks maps the shards of a split.
func openChunks(dir string, sp *SplitManifest, ctx, width int) (*Chunks, error) {
	c := &Chunks{ctx: ctx, width: width}
	for _, sh := range sp.Shards {
		b, unmap, err := mmapfile.Open(dirJoin(dir, sh.File), 1)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.unmap = append(c.unmap, unmap)
		if len(b) != sh.Chunks*ctx*width {
			c.Close()
			return nil, fmt.Errorf("shard %s: %d bytes, want %d", sh.File, len(b), sh.Chunks*ctx*width)
		}
		c.starts = append(c.starts, c.n)
		c.shards = append(c.shards, b)
		c.n += sh.Chunks
	}
	return c, nil
}

// memChunks wraps in-memory tokens (tests, small sets).
func memChunks(tokens []int32, ctx int) *Chunks {
	b := make([]byte, 4*len(tokens))
	for i, t := range tokens {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(t))
	}
	return &Chunks{ctx: ctx, width: 4, shards: [][]byte{b}, starts: []int{0}, n: len(tokens) / ctx}
}

func dirJoin(dir, name string) string { return dir + string(os.PathSeparator) + name }
