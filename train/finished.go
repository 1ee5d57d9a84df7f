package train

// LatestState is the state of run folder dir's newest complete checkpoint;
// ok is false when the folder has none (a run not started, or stopped
// before its first checkpoint). It only reads.
func LatestState(dir string) (st State, ok bool, err error) {
	ckpt, err := LatestCheckpoint(dir)
	if err != nil || ckpt == "" {
		return State{}, false, err
	}
	st, err = ReadState(ckpt)
	return st, err == nil, err
}

// Finished reports whether a checkpoint's state is a finished run's: the
// schedule's last step, its evaluation done. Trainer.Run writes it last,
// after the run log of every step is durable.
func (s State) Finished() bool {
	return s.TotalSteps > 0 && s.Step >= s.TotalSteps && !s.PendingEval
}
