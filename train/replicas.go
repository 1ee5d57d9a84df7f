package train

import "clm/torch"

// replicas is the data-parallel world a run trains in: its rank and size
// and the collectives the loop uses. A *torch.ProcessGroup is one; a single
// process is solo, a world of one whose collectives have nothing to do,
// so that the loop never asks which it has.
type replicas interface {
	Rank() int
	Size() int
	// LocalRank is the rank on this machine (the GPU to take).
	LocalRank() int
	AllReduce(ts []*torch.Tensor, op torch.ReduceOp) error
	Broadcast(ts []*torch.Tensor, root int) error
	Barrier() error
}

// solo is one process: rank 0 of 1. Over one rank a sum, an average and a
// broadcast leave every tensor as it is.
type solo struct{}

func (solo) Rank() int                                       { return 0 }
func (solo) Size() int                                       { return 1 }
func (solo) LocalRank() int                                  { return 0 }
func (solo) AllReduce([]*torch.Tensor, torch.ReduceOp) error { return nil }
func (solo) Broadcast([]*torch.Tensor, int) error            { return nil }
func (solo) Barrier() error                                  { return nil }

// replicasOf is g, or solo for nil (no process group).
func replicasOf(g *torch.ProcessGroup) replicas {
	if g == nil {
		return solo{}
	}
	return g
}

// sumOverRanks is x summed over the ranks (x itself for one process), with
// one host transfer.
func (t *Trainer) sumOverRanks(x float64) (float64, error) {
	v := torch.FromFloat64([]float64{x})
	defer v.Free()
	if err := t.eng.peers.AllReduce([]*torch.Tensor{v}, torch.ReduceOpSum); err != nil {
		return 0, err
	}
	return v.Float64s()[0], nil
}
