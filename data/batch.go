package data

import "fmt"

// Batcher serves micro-batches of chunks in a shuffled order that is a
// function of the seed and the epoch only, so that a saved State resumes the
// exact sequence. A batch never spans two epochs: the last incomplete batch
// of an epoch is dropped (as a DataLoader with drop_last).
type Batcher struct {
	chunks *Chunks
	size   int
	seed   int64
	epoch  int
	pos    int
	perm   []int32
}

// BatcherState is the cursor of a Batcher, to save with a checkpoint.
type BatcherState struct {
	Seed      int64 `json:"seed"`
	BatchSize int   `json:"batch_size"`
	Chunks    int   `json:"chunks"`
	Epoch     int   `json:"epoch"`
	Pos       int   `json:"pos"` // chunks of this epoch already served
}

// NewBatcher returns a Batcher of batchSize chunks of c.
func NewBatcher(c *Chunks, batchSize int, seed int64) (*Batcher, error) {
	if batchSize <= 0 {
		return nil, fmt.Errorf("batch size %d: must be positive", batchSize)
	}
	if c.Len() < batchSize {
		return nil, fmt.Errorf("batch size %d is larger than the %d chunks of the data", batchSize, c.Len())
	}
	b := &Batcher{chunks: c, size: batchSize, seed: seed}
	b.perm = permutation(c.Len(), seed, 1+uint64(b.epoch))
	return b, nil
}

// Epoch returns the current epoch (0-based).
func (b *Batcher) Epoch() int { return b.epoch }

// Next returns the next micro-batch: BatchSize rows of ContextLength ids.
func (b *Batcher) Next() [][]int32 {
	if b.pos+b.size > len(b.perm) {
		b.epoch++
		b.pos = 0
		b.perm = permutation(b.chunks.Len(), b.seed, 1+uint64(b.epoch))
	}
	rows := make([][]int32, b.size)
	for i := range rows {
		rows[i] = b.chunks.Chunk(int(b.perm[b.pos+i]), make([]int32, 0, b.chunks.ctx))
	}
	b.pos += b.size
	return rows
}

// State returns the cursor.
func (b *Batcher) State() BatcherState {
	return BatcherState{Seed: b.seed, BatchSize: b.size, Chunks: b.chunks.Len(), Epoch: b.epoch, Pos: b.pos}
}

// Restore moves the cursor to s, which must come from a Batcher over the same
// chunks with the same batch size and seed.
func (b *Batcher) Restore(s BatcherState) error {
	if s.Seed != b.seed || s.BatchSize != b.size || s.Chunks != b.chunks.Len() {
		return fmt.Errorf("batcher state (seed %d, batch size %d, %d chunks) does not match this data (seed %d, batch size %d, %d chunks)",
			s.Seed, s.BatchSize, s.Chunks, b.seed, b.size, b.chunks.Len())
	}
	if s.Epoch < 0 || s.Pos < 0 || s.Pos > b.chunks.Len() {
		return fmt.Errorf("batcher state epoch %d, position %d: out of range", s.Epoch, s.Pos)
	}
	if s.Epoch != b.epoch {
		b.perm = permutation(b.chunks.Len(), b.seed, 1+uint64(s.Epoch))
	}
	b.epoch, b.pos = s.Epoch, s.Pos
	return nil
}
